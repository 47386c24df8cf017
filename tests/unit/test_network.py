"""The address guard, and the network backend that enforces it before any socket is opened.

The guard's lists are explicit: no test here may pass only because of what the running Python's
`ipaddress` calls global (which changed with the fix for CVE-2024-4032).

The backend tests resolve names (the real resolver for "localhost" and literals, a custom
trio resolver otherwise) but never connect: the real connecting backend is replaced by a
recorder. They run on the real clock under `fail_after` (never the autojump clock, which would
jump time while the resolver thread works).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import pytest
import trio

from bgchallenge.domain.failures import Failure
from bgchallenge.domain.network import DENIED_IPV4, DENIED_IPV6, AddressGuard
from bgchallenge.work.fetch import (
    BLOCKED_MESSAGE,
    CONNECT_FAILED_MESSAGE,
    BlockedAddress,
    Fetcher,
    GuardedBackend,
)

GUARD_SECONDS = 10

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.254",
    "169.254.0.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fe80::1%1",  # with a scope id
    "febf:ffff::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",  # global-scope multicast
    "0.0.0.0",
    "::",
    "255.255.255.255",
    "100.64.0.1",  # shared address space
    "::ffff:127.0.0.1",
    "::ffff:7f00:2",  # the same kind, written in hex
    "::ffff:10.0.0.1",
    "::ffff:192.168.1.1",
    "::ffff:169.254.169.254",
    "::ffff:224.0.0.1",
    "::ffff:0.0.0.0",
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.255",
    "198.18.0.1",  # benchmarking
    "198.19.255.254",
    "240.0.0.1",  # reserved
    "100::1",  # discard-only
    "2001:db8::1",  # documentation
    "2001:2::1",  # benchmarking
    "fec0::1",  # deprecated site-local
    "64:ff9b::a9fe:a9fe",  # NAT64 (well-known prefix) onto the metadata address
    "2002:a9fe:a9fe::1",  # 6to4 onto the metadata address
    # Python 3.11.7's is_global calls these global (before the CVE-2024-4032 fix, or in
    # registries newer than the interpreter): only an explicit list refuses them.
    "64:ff9b:1::a9fe:a9fe",  # RFC 8215 local-use NAT64 carrying 169.254.169.254
    "64:ff9b:1::808:808",  # the whole local-use prefix: its layout is the operator's choice
    "192.0.0.8",  # IETF protocol assignments
    "192.0.0.171",
    "192.88.99.1",  # 6to4 relay anycast
    "::808:808",  # IPv4-compatible (deprecated): no route reaches it
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # segment routing SIDs (RFC 9602)
    "4000::1",  # unassigned
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, server and client (8.8.8.8) public
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 onto a public address: every IPv4 origin on an IPv6-only host
    "2002:808:808::1",
    "2606:4700::1111",
    "192.31.196.1",  # AS112: globally reachable, though in the special-purpose registry
    "223.255.255.254",
    "2c0f:ffff::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked_addresses(address: str) -> None:
    assert not AddressGuard().allows(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert AddressGuard().allows(address)
    assert AddressGuard().allows(ipaddress.ip_address(address))


@pytest.mark.parametrize("answer", [True, False])
def test_the_guard_does_not_ask_the_interpreter_what_is_global(
    monkeypatch: pytest.MonkeyPatch, answer: bool
) -> None:
    # Whatever this Python's ipaddress believes, the guard answers the same.
    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        for name in (
            "is_global",
            "is_private",
            "is_reserved",
            "is_multicast",
            "is_loopback",
            "is_link_local",
            "is_unspecified",
        ):
            monkeypatch.setattr(cls, name, property(lambda self: answer))
    guard = AddressGuard()
    assert [a for a in BLOCKED if guard.allows(a)] == []
    assert [a for a in PUBLIC if not guard.allows(a)] == []


def test_the_deny_lists_cover_the_registries_non_global_blocks() -> None:
    def covered(cidr: str) -> bool:
        network = ipaddress.ip_network(cidr)
        lists: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
            DENIED_IPV4 if network.version == 4 else DENIED_IPV6
        )
        return any(network.subnet_of(denied) for denied in lists)  # type: ignore[arg-type]

    # IANA's special-purpose registries, "globally reachable: false" (and multicast)
    not_global = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001::/32",
        "2001:2::/48", "2001:10::/28", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    ]  # fmt: skip
    assert [cidr for cidr in not_global if not covered(cidr)] == []


def test_just_outside_the_private_ranges_is_public() -> None:
    guard = AddressGuard()
    assert guard.allows("172.32.0.1")
    assert guard.allows("172.15.255.254")
    assert guard.allows("11.0.0.1")


def test_allow_networks_opens_exactly_the_named_networks() -> None:
    guard = AddressGuard([ipaddress.ip_network("127.0.0.0/8")])
    assert guard.allows("127.0.0.5")
    assert guard.allows("::ffff:127.0.0.5")
    assert not guard.allows("::1")
    assert not guard.allows("10.0.0.1")
    assert not guard.allows("169.254.169.254")
    assert guard.allows("8.8.8.8")


def test_allow_networks_for_ipv6() -> None:
    guard = AddressGuard([ipaddress.ip_network("::1/128"), ipaddress.ip_network("fd00::/64")])
    assert guard.allows("::1")
    assert guard.allows("fd00::5")
    assert not guard.allows("fd00:0:0:1::5")
    assert not guard.allows("127.0.0.1")


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the connecting backend: records what it would connect to."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError(f"recorded {host}:{port}")


class FixedResolver(trio.abc.HostnameResolver):
    """Answers every name with the given addresses (scoped to the current trio run)."""

    def __init__(self, addresses: list[str], delay: float = 0.0) -> None:
        self.addresses = addresses
        self.delay = delay

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, ...]]:
        await trio.sleep(self.delay)
        answers: list[tuple[Any, ...]] = []
        for address in self.addresses:
            if ipaddress.ip_address(address).version == 6:
                answers.append((socket.AF_INET6, type, 6, "", (address, port, 0, 0)))
            else:
                answers.append((socket.AF_INET, type, 6, "", (address, port)))
        return answers

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        raise NotImplementedError


def recording_backend(guard: AddressGuard) -> tuple[GuardedBackend, RecordingBackend]:
    backend = GuardedBackend(guard)
    recorder = RecordingBackend()
    backend.inner = recorder  # type: ignore[assignment]
    return backend, recorder


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "10.0.0.1", "169.254.169.254"])
async def test_a_refused_host_never_reaches_a_socket(host: str) -> None:
    # Nothing listens on port 9: had a connection been attempted, it would fail with
    # httpcore.ConnectError, not BlockedAddress.
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(BlockedAddress):
            await GuardedBackend(AddressGuard()).connect_tcp(host, 9)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "10.0.0.1", "169.254.169.254"])
async def test_a_refused_host_is_not_handed_to_the_connecting_backend(host: str) -> None:
    backend, recorder = recording_backend(AddressGuard())
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(BlockedAddress, match="not allowed"):
            await backend.connect_tcp(host, 9)
    assert recorder.connects == []


async def test_an_allowed_network_reaches_the_connecting_backend() -> None:
    backend, recorder = recording_backend(AddressGuard([ipaddress.ip_network("127.0.0.0/8")]))
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("127.0.0.1", 9)
    assert recorder.connects == [("127.0.0.1", 9)]


async def test_only_the_allowed_addresses_of_a_name_are_tried() -> None:
    trio.socket.set_custom_hostname_resolver(
        FixedResolver(["10.0.0.1", "93.184.216.34", "::1", "2606:2800:220:1::1"])
    )
    backend, recorder = recording_backend(AddressGuard())
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("origin.test", 443)
    assert recorder.connects == [("93.184.216.34", 443), ("2606:2800:220:1::1", 443)]


async def test_a_name_resolving_only_to_refused_addresses_is_blocked() -> None:
    trio.socket.set_custom_hostname_resolver(
        FixedResolver(["10.1.2.3", "::ffff:127.0.0.1", "fd00::1"])
    )
    backend, recorder = recording_backend(AddressGuard())
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(BlockedAddress) as caught:
            await backend.connect_tcp("internal.test", 80)
    assert "internal.test" in str(caught.value) and "10.1.2.3" in str(caught.value)
    assert recorder.connects == []


async def test_slow_resolution_times_out_as_a_connect_timeout() -> None:
    trio.socket.set_custom_hostname_resolver(FixedResolver(["93.184.216.34"], delay=60))
    backend, recorder = recording_backend(AddressGuard())
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(httpcore.ConnectTimeout):
            await backend.connect_tcp("slow.test", 80, timeout=0.05)
    assert recorder.connects == []


async def test_unix_sockets_are_refused() -> None:
    with trio.fail_after(GUARD_SECONDS):
        with pytest.raises(BlockedAddress):
            await GuardedBackend(AddressGuard()).connect_unix_socket("/run/docker.sock")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::a00:1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 onto loopback
        ("64:ff9b::a00:1", False),  # NAT64 onto private
        ("64:ff9b::808:808", True),  # NAT64 onto a public address
        ("2002:7f00:1::1", False),  # 6to4 onto loopback
        ("2002:808:808::1", True),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo: client 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", False),  # Teredo: client 8.8.8.8, refused too
        ("64:ff9b:1::a9fe:a9fe", False),  # local-use NAT64: refused whatever it carries
        ("::ffff:a9fe:a9fe", False),
        ("::ffff:808:808", True),
    ],
)
def test_ipv6_forms_carrying_an_ipv4_address_are_judged_by_it(address: str, allowed: bool) -> None:
    assert AddressGuard().allows(address) is allowed


async def test_a_blocked_name_fails_without_naming_its_addresses() -> None:
    trio.socket.set_custom_hostname_resolver(FixedResolver(["10.1.2.3", "fd00::7"]))
    fetcher = Fetcher(AddressGuard(), connect_timeout=5, read_timeout=5, max_bytes=1000)
    try:
        with trio.fail_after(GUARD_SECONDS), pytest.raises(Failure) as caught:
            async with fetcher.open("http://internal.test/a.png"):
                pass
    finally:
        await fetcher.aclose()
    assert caught.value.code == "blocked_address"
    assert caught.value.message == BLOCKED_MESSAGE
    assert "10.1.2.3" not in str(caught.value) and "fd00" not in str(caught.value)


class FailingResolver(FixedResolver):
    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_an_unknown_name_reads_like_any_connection_failure() -> None:
    trio.socket.set_custom_hostname_resolver(FailingResolver([]))
    fetcher = Fetcher(AddressGuard(), connect_timeout=5, read_timeout=5, max_bytes=1000)
    try:
        with trio.fail_after(GUARD_SECONDS), pytest.raises(Failure) as caught:
            async with fetcher.open("http://no-such-host.test/a.png"):
                pass
    finally:
        await fetcher.aclose()
    assert (caught.value.code, caught.value.message) == (
        "origin_unavailable",
        CONNECT_FAILED_MESSAGE,
    )
