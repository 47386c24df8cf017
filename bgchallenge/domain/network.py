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
        and IPv4-mapped IPv6 addresses onto any of those.
        """
        address = ipaddress.ip_address(address)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if any(a in network for a in candidates for network in self.allow_networks):
            return True
        return all(a.is_global and not a.is_multicast for a in candidates)
