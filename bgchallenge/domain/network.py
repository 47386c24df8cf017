"""Which addresses the fetcher may connect to: public ones, and networks allowed by name."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressGuard:
    def __init__(self, allow_networks: Iterable[IpNetwork] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def allows(self, address: IpAddress | str) -> bool:
        """True for a global unicast address, or one inside an allowed network.

        Refused: loopback, private, link-local, unique-local, multicast, unspecified, reserved,
        and IPv6 addresses that carry an IPv4 address onto any of those (IPv4-mapped,
        IPv4-compatible, NAT64, 6to4, Teredo).
        """
        address = ipaddress.ip_address(address)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        candidates = [address, *_embedded_ipv4(address)]
        if any(a in network for a in candidates for network in self.allow_networks):
            return True
        return all(a.is_global and not a.is_multicast for a in candidates)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: IpAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address can reach through translation or tunnelling."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    return embedded
