"""Who a request comes from: the peer, or what a trusted reverse proxy says in X-Forwarded-For.

Behind nginx every peer is the proxy, so rate limits keyed on the peer would put the whole world
in one bucket. X-Forwarded-For is believed only when the peer is in TRUSTED_PROXIES, and then
read from the right: each trusted proxy appends the address it saw, so the rightmost address that
is not a trusted proxy is the client. Everything to its left was written by the client and is
ignored, so a spoofed header cannot pick someone else's bucket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from server.settings import SETTINGS, proxy_networks


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


def client_ip(request: web.Request) -> str:
    return resolve(
        request.remote,
        request.headers.getall("X-Forwarded-For", ()),
        request.app[SETTINGS].trusted_proxies,
    )
