"""What the server sends: ack data, pushes and REST bodies, declared as msgspec types.

The views build plain dicts for speed; these types describe those dicts for the API documents
(server/http/apidocs.py), and the tests convert real answers into them, so a view that drifts from
its documented shape fails a test.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from game.errors import ErrorCode

# Decimals travel as exact JSON numbers (server/wire/codec.py), not as msgspec's default strings;
# server/http/apidocs.py gives schemas marked with WIRE_TYPE that JSON type.
WIRE_TYPE = "x-wire-type"
Number = Annotated[Decimal, msgspec.Meta(extra_json_schema={WIRE_TYPE: "number"})]
Credits = Annotated[
    Decimal,
    msgspec.Meta(extra_json_schema={WIRE_TYPE: "number", "description": "at most 2 decimals"}),
]
Odds = Annotated[
    Decimal,
    msgspec.Meta(
        extra_json_schema={
            WIRE_TYPE: "number",
            "minimum": 0.0001,
            "maximum": 0.9999,
            "description": "implied probability of the side, at most 4 decimals",
        }
    ),
]
Uuid = Annotated[str, msgspec.Meta(description="a UUID")]
BalanceVersion = Annotated[
    int,
    msgspec.Meta(
        description="orders the player's balances: of two, the one with the higher version is newer"
    ),
]
Period = Literal["all", "week", "day"]


class Reply(msgspec.Struct, kw_only=True):
    """Base of every documented answer."""


class Error(Reply):
    """A refusal: a stable code, a message for humans, and fields that depend on the code."""

    code: ErrorCode
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(Reply):
    error: Error


class AckError(Reply):
    ok: Literal[False]
    error: Error


class ConnectRefusal(Reply):
    """The `connect_error` data when the handshake token is missing, bad or expired."""

    message: str
    code: ErrorCode
    data: Error


class HandshakeAuth(Reply):
    """The Socket.IO handshake `auth` object. With `recover: true` the server answers CONNECT
    with `{sid, pid}` and appends an offset (a string) as the last argument of every push; a
    client that reconnects with `{pid, offset}` beside its token within RECOVERY_WINDOW_S gets
    the same sid, its rooms and every push it missed (socket.io-client 4.6+ does this by
    itself and sets `socket.recovered`)."""

    token: Annotated[str, msgspec.Meta(description="an access token from /auth/signup or login")]
    recover: (
        Annotated[
            bool,
            msgspec.Meta(description="opt in to connection state recovery (docs/protocol.md)"),
        ]
        | None
    ) = None
    pid: (
        Annotated[
            str,
            msgspec.Meta(description="the private session id of the CONNECT answer, to resume"),
        ]
        | None
    ) = None
    offset: (
        Annotated[
            str,
            msgspec.Meta(description="the offset of the last push the client received"),
        ]
        | None
    ) = None


class User(Reply):
    id: Uuid
    username: str
    balance: Credits
    createdAt: datetime
    anonymous: Annotated[bool, msgspec.Meta(description="the name is hidden in market activity")]


class Market(Reply):
    id: Uuid
    question: str
    thisLabel: str
    thatLabel: str
    thisOdds: Odds | None
    thatOdds: Odds | None
    oddsUpdatedAt: datetime | None
    status: Literal["open", "closed", "resolved", "cancelled"]
    endsAt: datetime | None
    resolvedSide: Literal["this", "that", "split"] | None
    category: str | None
    imageUrl: str | None
    source: str
    sourceId: str


class Bet(Reply):
    id: Uuid
    clientBetId: str
    marketId: Uuid
    side: Literal["this", "that"]
    amount: Credits
    odds: Odds
    potentialPayout: Credits
    status: Literal["open", "won", "lost", "split", "refunded"]
    payout: Credits | None
    placedAt: datetime
    settledAt: datetime | None


class LedgerEntry(Reply):
    id: Uuid
    kind: Literal["signup_bonus", "daily_reward", "bet_stake", "bet_payout", "bet_refund"]
    amount: Number
    balanceAfter: Credits
    betId: Uuid | None
    createdAt: datetime


class Standing(Reply):
    rank: int
    userId: Uuid
    username: str
    pnl: Number


class MyStanding(Reply):
    rank: int
    pnl: Number


# Ack data
class Nothing(Reply):
    """An empty object: the request was done."""


class MarketsPage(Reply):
    markets: list[Market]
    nextCursor: str | None


class MarketReply(Reply):
    market: Market


class MarketsReply(Reply):
    markets: list[Market]


class WatchedMarket(Market):
    """A market as `market:get` and `market:subscribe` answer it: with its watchers."""

    watchers: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="players with a socket subscribed to the market, on every node, each "
            "counted once (the asking player as they are now)",
        ),
    ]


class WatchedMarketReply(Reply):
    market: WatchedMarket


class WatchedMarketsReply(Reply):
    markets: list[WatchedMarket]


class Online(Reply):
    online: Annotated[
        int, msgspec.Meta(ge=0, description="players connected on every node, each counted once")
    ]


class BetReply(Reply):
    bet: Bet
    balance: Credits
    balanceVersion: BalanceVersion


class BetsPage(Reply):
    bets: list[Bet]
    nextCursor: str | None


class Wallet(Reply):
    balance: Credits
    balanceVersion: BalanceVersion
    openStake: Credits
    openPotentialPayout: Credits


class HistoryPage(Reply):
    entries: list[LedgerEntry]
    nextCursor: str | None


class RewardClaimed(Reply):
    amount: Credits
    balance: Credits
    balanceVersion: BalanceVersion
    nextClaimAt: datetime


class Standings(Reply):
    period: Period
    entries: list[Standing]
    me: MyStanding | None
    total: Annotated[int, msgspec.Meta(description="how many players the period ranks")]


class OddsPoint(Reply):
    """The "this" side's shown odds over one candle starting at `t`: the odds in force when it
    began, the highest, the lowest, and those at its end."""

    t: datetime
    open: Odds
    high: Odds
    low: Odds
    close: Odds


class OddsHistory(Reply):
    interval: Literal["1m", "1h", "1d"]
    points: Annotated[
        list[OddsPoint],
        msgspec.Meta(
            description="oldest first, at most 1440; a candle without a change is left out"
        ),
    ]


class ActivityBet(Reply):
    """A bet on the market as anyone may see it: no id, no balance."""

    username: Annotated[
        str, msgspec.Meta(description='the player\'s name, or "anonymous" when they hide it')
    ]
    side: Literal["this", "that"]
    amount: Credits
    odds: Odds
    at: datetime


class ActivityPage(Reply):
    bets: Annotated[list[ActivityBet], msgspec.Meta(description="newest first")]
    nextCursor: str | None


class Expiry(Reply):
    expiresAt: datetime


class SyncState(Reply):
    user: User
    openBets: list[Bet]
    markets: list[Market]


# Pushes
class SessionPush(Reply):
    user: User
    serverTime: datetime


class OddsTick(Reply):
    marketId: Uuid
    thisOdds: Odds
    thatOdds: Odds
    at: datetime


class BalancePush(Reply):
    balance: Credits
    reason: Literal["bet", "payout", "refund", "reward"]
    balanceVersion: BalanceVersion


class ActivityPush(Reply):
    marketId: Uuid
    bets: Annotated[
        list[ActivityBet],
        msgspec.Meta(
            description="the market's new bets on one node since its last push, newest first"
        ),
    ]
    omitted: Annotated[
        int, msgspec.Meta(description="older new bets left out of this batch (page for them)")
    ]


class WatchersPush(Reply):
    marketId: Uuid
    watchers: Annotated[int, msgspec.Meta(ge=0)]


class LeaderboardPush(Reply):
    period: Period
    entries: list[Standing]


# REST bodies
class AuthSession(Reply):
    user: User
    accessToken: str
    refreshToken: str
    accessExpiresIn: Annotated[int, msgspec.Meta(description="seconds")]


class TokenPair(Reply):
    accessToken: str
    refreshToken: str
    accessExpiresIn: int


class UserReply(Reply):
    user: User


class Health(Reply):
    status: Literal["ok"]


class Readiness(Reply):
    status: Literal["ok", "unavailable"]
    # Only for the operator (METRICS_TOKEN): what each dependency answered.
    checks: dict[str, Any] | None = None
