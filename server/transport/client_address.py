"""Who a request comes from: the peer, or what a trusted reverse proxy says in X-Forwarded-For.

Behind nginx every peer is the proxy, so rate limits keyed on the peer would put the whole world
in one bucket. X-Forwarded-For is believed only when the peer is in TRUSTED_PROXIES, and then
read from the right: each trusted proxy appends the address it saw, so the rightmost address that
is not a trusted proxy is the client. Everything to its left was written by the client and is
ignored, so a spoofed header cannot pick someone else's bucket.

An IPv6 client is known by its /64: one subscriber is given a whole /64 and may pick any address
in it, so a limit keyed on the full address would give them 2**64 buckets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from server.settings import SETTINGS, proxy_networks

# The prefix one IPv6 subscriber holds (RFC 6177).
IPV6_CLIENT_PREFIX = 64


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def resolve(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[str, ...]) -> str:
    """The client address for a peer and its X-Forwarded-For header values (in order)."""
    networks = proxy_networks(trusted)
    current = peer or "unknown"
    address = _address(current)
    if not networks or address is None or not any(address in net for net in networks):
        return current
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = _address(hop)
        if hop_address is None:
            break  # garbage from a client: the proxy that passed it on is the last address known
        current = str(hop_address)
        if not any(hop_address in net for net in networks):
            break
    return current


def client_key(address: str) -> str:
    """What per-address limits count: an IPv4 address as it is, an IPv6 address as its /64 (an
    IPv4-mapped one as its IPv4 address), anything else unchanged."""
    parsed = _address(address)
    if not isinstance(parsed, ipaddress.IPv6Address):
        return address
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))


def client_ip(request: web.Request) -> str:
    """The client, as per-address limits and logs know it (`client_key` of its address)."""
    return client_key(
        resolve(
            request.remote,
            request.headers.getall("X-Forwarded-For", ()),
            request.app[SETTINGS].trusted_proxies,
        )
    )
