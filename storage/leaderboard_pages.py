"""A page of a leaderboard: by rank from any offset, or centred on one player, with that player's
own rank and PnL and the board's size, read in one atomic step so ranks never shift between them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import redis.asyncio as redis

from storage import keys
from storage.database import Executor
from storage.leaderboards import NameLookups, Standing, score_to_pnl, usernames

# KEYS: the board. ARGV: the player ('' for none), limit, offset, around ('1': centre the page on
# the player). Around a player the page holds (limit - 1) // 2 ranks above them and the rest
# below; near either end it slides so that it stays full. A player with no standing gets the page
# at the offset. Ranks are 0-based here; -1 is "no standing".
PAGE_LUA: Final = """
local total = redis.call('ZCARD', KEYS[1])
local rank = -1
local score = ''
if ARGV[1] ~= '' then
    local found = redis.call('ZREVRANK', KEYS[1], ARGV[1])
    if found then
        rank = found
        score = redis.call('ZSCORE', KEYS[1], ARGV[1])
    end
end
local limit = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
if ARGV[4] == '1' and rank >= 0 then
    start = rank - math.floor((limit - 1) / 2)
    if start + limit > total then start = total - limit end
    if start < 0 then start = 0 end
end
return {total, rank, score, start, redis.call('ZREVRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')}
"""


@dataclass(frozen=True, slots=True)
class BoardPage:
    standings: list[Standing]
    # The asking player's (rank, pnl), None when they have no standing in the bucket.
    mine: tuple[int, Decimal] | None
    # How many players the bucket ranks.
    total: int


async def page(
    pool: Executor,
    client: redis.Redis,
    bucket: str,
    limit: int,
    *,
    offset: int = 0,
    me: uuid.UUID | None = None,
    around_me: bool = False,
    on_names: NameLookups | None = None,
) -> BoardPage:
    """`limit` standings of a bucket from rank `offset + 1`, or around `me`; rank 1 = highest PnL."""
    script = client.register_script(PAGE_LUA)
    member = "" if me is None else str(me)
    total, rank, score, start, flat = await script(
        keys=[keys.leaderboard(bucket)],
        args=[member, limit, offset, "1" if around_me else "0"],
    )
    entries = [(str(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
    names = await usernames(pool, client, [member for member, _ in entries], on_names)
    standings = [
        Standing(position, member, names.get(member, ""), score_to_pnl(points))
        for position, (member, points) in enumerate(entries, start=int(start) + 1)
    ]
    mine = None if int(rank) < 0 else (int(rank) + 1, score_to_pnl(float(score)))
    return BoardPage(standings, mine, int(total))
