"""Credits on the wire are written with exactly two decimals, whatever the field (docs/protocol.md,
Basics): read from the raw frames, before any JSON parser turns `1000.00` into 1000."""

from __future__ import annotations

import re

import aiohttp
import asyncpg
from aiohttp import web

from tests.betting_fixtures import insert_market
from tests.players import Player
from tests.raw_socket import RawSocket

CREDIT_FIELDS = ("balance", "amount", "balanceAfter", "potentialPayout", "payout", "pnl")
CREDIT = re.compile(r'"(' + "|".join(CREDIT_FIELDS) + r')":(-?[0-9][0-9.eE+-]*)')


async def test_every_credit_field_is_written_with_two_decimals(
    server: tuple[str, web.Application], http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    base, _ = server
    market = await insert_market(db)
    player = await Player(base, http).signup()
    raw = await RawSocket(base, http).open()
    await raw.authenticate(player.access_token)
    frames = []
    requests = [
        '["wallet:get",{}]',
        f'["bet:place",{{"marketId":"{market}","side":"this","amount":10,"clientBetId":"c1"}}]',
        f'["bet:place",{{"marketId":"{market}","side":"that","amount":"12.5","clientBetId":"c2"}}]',
        '["bets:list",{}]',
        '["wallet:history",{}]',
        '["reward:claim",{}]',
        '["leaderboard:get",{"period":"all"}]',
        '["sync",{}]',
    ]
    for n, request in enumerate(requests, start=1):
        await raw.send(f"42{n}{request}")
        for _ in range(20):
            text = await raw.receive_text()
            frames.append(text)
            if text.startswith(f"43{n}["):
                break
    written = [value for frame in frames for _, value in CREDIT.findall(frame)]
    assert len(written) >= 10, frames
    odd = [
        (field, value)
        for frame in frames
        for field, value in CREDIT.findall(frame)
        if not re.fullmatch(r"-?[0-9]+\.[0-9]{2}", value)
    ]
    assert not odd, (odd, frames)
    await raw.close()
