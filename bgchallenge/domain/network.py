"""Which addresses the fetcher may connect to: public ones, and networks allowed by name.

The decision uses explicit lists taken from IANA's special-purpose address registries, never
`ipaddress`'s `is_global`/`is_private`, whose answers change between Python releases (those
before the CVE-2024-4032 fix call `64:ff9b:1::/48` or `192.0.0.8` global).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(*cidrs: str) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# IPv4 Special-Purpose Address Registry entries that are not globally reachable, multicast and
# the reserved class E. (Its globally reachable anycast blocks, e.g. AS112, stay allowed.)
DENIED_IPV4 = _networks(
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (cloud metadata)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # deprecated 6to4 relay anycast
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
)

# IPv6: everything outside the global unicast space 2000::/3 (unspecified, loopback,
# IPv4-compatible, the local-use NAT64 prefix 64:ff9b:1::/48, discard-only 100::/64,
# unique-local, link-local, site-local, multicast, unassigned), and the registry's blocks inside
# it that are not globally reachable. The forms that carry an IPv4 address onto the IPv4
# Internet (IPv4-mapped, the well-known NAT64 prefix, 6to4) are judged by that address instead.
# Teredo (2001::/32, inside 2001::/23) is refused outright: it reaches IPv4 hosts through
# relays, and no image origin needs it.
DENIED_IPV6 = _networks(
    "::/3",  # includes ::/128, ::1/128, ::/96 (IPv4-compatible), 64:ff9b:1::/48, 100::/64
    "4000::/2",  # unassigned, includes 5f00::/16 (segment routing)
    "8000::/1",  # unassigned, unique-local, link-local, site-local, multicast
    # IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID, and a few
    # anycast services (PCP, TURN, AMT, AS112) that are no image origin either.
    "2001::/23",
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
)

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


class AddressGuard:
    def __init__(self, allow_networks: Iterable[IpNetwork] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def allows(self, address: IpAddress | str) -> bool:
        """True for a globally reachable unicast address, or one inside an allowed network.

        Refused: every address in `DENIED_IPV4` or `DENIED_IPV6`, and IPv6 addresses that carry
        an IPv4 address (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4) onto a refused one.
        """
        address = ipaddress.ip_address(address)
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        carried = carried_ipv4(address)
        candidates = [address] if carried is None else [address, carried]
        if any(a in network for a in candidates for network in self.allow_networks):
            return True
        if carried is not None:
            return not _denied(carried)
        return not _denied(address)


def _denied(address: IpAddress) -> bool:
    networks = DENIED_IPV4 if isinstance(address, ipaddress.IPv4Address) else DENIED_IPV6
    return any(address in network for network in networks)


def carried_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to this IPv6 address reaches, by translation or 6to4."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None
