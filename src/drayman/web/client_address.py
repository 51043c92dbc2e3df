"""The client's address: the TCP peer, or, behind a trusted proxy, from X-Forwarded-For.

Each proxy appends the address it got the request from, so the header reads left to right
from the client to the last proxy; only the entries appended by proxies we trust are true.
Reading from the right and skipping trusted proxies, the first address that is not one is
the client (the right-most untrusted address). Anything to its left was written by the
client itself and proves nothing. From a peer that is not a trusted proxy, the header is
ignored outright: otherwise anybody could choose the address their logins are counted
(and audited) under.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Sequence[str]) -> tuple[Network, ...]:
    """Networks from settings (already checked by `config`)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def client_address(request: HTTPConnection, trusted: Sequence[Network]) -> str:
    """The address to count logins under and to audit (at most 64 characters), written one
    way: `1.2.3.4`, never `::ffff:1.2.3.4` nor `1.2.3.4:5555`."""
    peer = request.client.host if request.client else "unknown"
    address = _normal(peer) or peer
    if not _trusted(address, trusted):
        return address[:64]
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed(hops):
        parsed = _normal(hop)
        if parsed is None:
            break  # garbage written by someone: the last address we could vouch for stands
        address = parsed
        if not _trusted(parsed, trusted):
            break
    return address[:64]


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in network for network in trusted)


def _normal(hop: str) -> str | None:
    """A hop as an address: without its port (`1.2.3.4:5555`, `[2001:db8::1]:443`), an
    IPv4-mapped IPv6 address as the IPv4 address it is; None when it is not an address."""
    if hop.startswith("["):
        host, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        hop = host
    elif hop.count(":") == 1:
        hop, _, port = hop.partition(":")
        if not port.isdigit():
            return None
    parsed = _parse(hop)
    return None if parsed is None else str(parsed)


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed
