"""Before a load run opens a socket: the server's limits (`GET /loadtest/limits`) against what the
plan will ask of them, and the players' credits and tokens against its stakes and length.

Each limit the run would run into becomes one line naming the setting or option to change and
the value that lets the run through; with any such line the run does not start (exit 2).
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from loadtest.plan import LoadPlan
from loadtest.worker import MARKET_REFRESH_S

LIMITS_PATH: Final = "/loadtest/limits"
# How a closed loop's pace is judged: each lane sends its next request when the previous ack is
# back, and on loopback an ack can be back within a millisecond.
CLOSED_LOOP_LANE_PACE: Final = 1000.0
# A player's requests in a window are drawn from the mix at random: a limit must hold the mean
# and three standard deviations more, or some windows of a long run go over it.
SPREAD_SIGMAS: Final = 3.0
# The players whose balance and token are read over REST before the run (`GET /auth/me`).
BALANCE_SAMPLE: Final = 5
# Connecting and subscribing come before the measured run, and tokens must outlive both.
TOKEN_MARGIN_S: Final = 120.0
SKIP_HINT: Final = "or pass --skip-preflight to run unchecked"

Printer = Callable[[str], None]


class PreflightRefused(Exception):
    """The preflight could not read the server's limits; the message says what to do."""


@dataclass(frozen=True)
class ServerLimits:
    """The answer of GET /loadtest/limits."""

    settings: dict[str, Any]
    feed: str
    open_markets: int
    trusted_proxies: bool
    client_address: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ServerLimits:
        return cls(
            settings=dict(body["settings"]),
            feed=str(body["feed"]),
            open_markets=int(body["openMarkets"]),
            trusted_proxies=bool(body["trustedProxies"]),
            client_address=str(body["clientAddress"]),
        )

    def rate(self, name: str) -> tuple[int, int]:
        count, _, window = str(self.settings[name]).partition("/")
        return int(count), int(window)

    def number(self, name: str) -> float:
        return float(self.settings[name])

    @property
    def rate_limited(self) -> bool:
        return bool(self.settings["RATE_LIMIT_ENABLED"])


@dataclass(frozen=True)
class Demand:
    """What a run will ask of the server, worked out from its plan before any socket opens."""

    mode: str
    sockets: int
    most_sockets_per_player: int
    signups: int
    # Open loop: the schedule's requests a second per player (players take turns). Closed loop:
    # the most a player's lanes can send (CLOSED_LOOP_LANE_PACE each). Idle: none.
    requests_per_player_s: float
    bet_share: float
    amount: tuple[int, int]
    run_s: float

    @classmethod
    def of(cls, plan: LoadPlan, signups: int = 0) -> Demand:
        players = max(1, len(plan.players))
        ids = Counter(str(player.get("id", index)) for index, player in enumerate(plan.players))
        if plan.mode == "open":
            per_player = plan.rate / players
        elif plan.mode == "closed":
            lanes = math.ceil((plan.concurrency or players) / players)
            per_player = lanes * CLOSED_LOOP_LANE_PACE
        else:
            per_player = 0.0
        total = sum(plan.mix.values()) or 1.0
        return cls(
            mode=plan.mode,
            sockets=len(plan.players),
            most_sockets_per_player=max(ids.values(), default=0),
            signups=signups,
            requests_per_player_s=per_player,
            bet_share=plan.mix.get("bet", 0.0) / total if plan.mode != "idle" else 0.0,
            amount=plan.amount,
            run_s=plan.warmup_s + plan.duration_s,
        )

    @property
    def betting(self) -> bool:
        return self.bet_share > 0

    def in_window(self, window_s: float, share: float) -> int:
        """The most requests of `share` of the mix one player sends in one limit window."""
        rate = self.requests_per_player_s
        if rate <= 0 or share <= 0:
            return 0
        # An open loop's schedule fits floor(rate * window) + 1 requests into a window that opens
        # with one of them; a closed loop's pace is already a ceiling.
        sent = (
            math.floor(rate * window_s) + 1 if self.mode == "open" else math.ceil(rate * window_s)
        )
        return min(sent, _with_spread(sent, share))

    def bets_per_player(self) -> int:
        """Open loop: the bets one player places over warm-up and measurement, at most."""
        return _with_spread(self.requests_per_player_s * self.run_s, self.bet_share)


def _with_spread(trials: float, share: float) -> int:
    if share >= 1:
        return math.ceil(trials)
    mean = trials * share
    return math.ceil(mean + SPREAD_SIGMAS * math.sqrt(mean * (1 - share)))


def check_limits(limits: ServerLimits, demand: Demand) -> list[str]:
    """One line per server limit the run would run into, naming the setting and the value to set."""
    lines = []
    address = limits.client_address
    if limits.rate_limited:
        count, window = limits.rate("RATE_LIMIT_CONNECTIONS_PER_IP")
        if demand.sockets > count:
            lines.append(
                f"RATE_LIMIT_CONNECTIONS_PER_IP={count}/{window} refuses up to "
                f"{demand.sockets - count:,} of {demand.sockets:,} sockets from {address} (at "
                f"most {count:,} new connections {_per(window)} from one address): start the "
                f"server with RATE_LIMIT_CONNECTIONS_PER_IP={2 * demand.sockets}/1 or "
                "RATE_LIMIT_ENABLED=false"
            )
        if demand.signups:
            count, window = limits.rate("RATE_LIMIT_SIGNUP_PER_IP")
            if demand.signups > count:
                lines.append(
                    f"RATE_LIMIT_SIGNUP_PER_IP={count}/{window} refuses {demand.signups - count:,} "
                    f"of the {demand.signups:,} sign-ups from {address}: start the server with "
                    f"RATE_LIMIT_SIGNUP_PER_IP={2 * demand.signups}/{window} or "
                    "RATE_LIMIT_ENABLED=false, or seed the players (`thisthat seed --players "
                    f"{demand.signups}`, then --players-file)"
                )
        lines += _per_player_limits(limits, demand)
    most = int(limits.number("SOCKETS_PER_USER"))
    if demand.most_sockets_per_player > most:
        lines.append(
            f"SOCKETS_PER_USER={most} refuses sockets of players listed "
            f"{demand.most_sockets_per_player} times: list each player at most {most} times, or "
            f"start the server with SOCKETS_PER_USER={demand.most_sockets_per_player}"
        )
    if demand.mode == "open":
        frames = limits.number("WS_FRAMES_PER_S")
        if demand.requests_per_player_s > frames:
            lines.append(
                f"WS_FRAMES_PER_S={_plain(frames)} closes a socket that sends more frames a second, and "
                f"each player here sends {demand.requests_per_player_s:.1f}: add players or "
                f"lower --rate, or start the server with "
                f"WS_FRAMES_PER_S={math.ceil(2 * demand.requests_per_player_s)}"
            )
    if demand.betting:
        lines += _bet_amounts(limits, demand)
        if limits.open_markets == 0:
            lines.append(
                "the server has no open market, so no bet would find one: start it with a feed "
                "that keeps markets open, e.g. FEED=replay:feeds/timelines/sample.jsonl "
                "FEED_REPLAY_LOOP=true"
            )
    if demand.signups:
        ttl = limits.number("JWT_ACCESS_EXPIRES_IN")
        if ttl < demand.run_s + TOKEN_MARGIN_S:
            lines.append(
                f"JWT_ACCESS_EXPIRES_IN={_plain(ttl)} ends the signed-up players' tokens after {_plain(ttl)} s, "
                f"before the run (about {demand.run_s + TOKEN_MARGIN_S:,.0f} s with connecting) ends: start "
                f"the server with JWT_ACCESS_EXPIRES_IN={_duration(2 * (demand.run_s + TOKEN_MARGIN_S))}, "
                "or seed the players (`thisthat seed --token-ttl 2h`)"
            )
    return lines


def _per_player_limits(limits: ServerLimits, demand: Demand) -> list[str]:
    if demand.mode == "idle":
        return []
    lines = []
    if demand.mode == "open":
        pace = f"{demand.requests_per_player_s:.2f} requests/s per player: --rate over the players"
    else:
        pace = (
            "a closed loop sends a player's next request as soon as its ack is back, judged at "
            f"{CLOSED_LOOP_LANE_PACE:g}/s per lane"
        )
    for name, share, what, extra_per_window in (
        ("RATE_LIMIT_BETS_PER_USER", demand.bet_share, "bets", 0),
        ("RATE_LIMIT_EVENTS_PER_USER", 1 - demand.bet_share, "other events", 1),
    ):
        count, window = limits.rate(name)
        need = demand.in_window(window, share)
        if need and extra_per_window:
            # One player of each client process lists the open markets every MARKET_REFRESH_S.
            need += math.ceil(window / MARKET_REFRESH_S)
        if need > count:
            lines.append(
                f"{name}={count}/{window} refuses {what} past {count} per player {_per(window)}, "
                f"and this run sends up to {need:,} ({pace}): start the server with "
                f"{name}={2 * need}/{window} or RATE_LIMIT_ENABLED=false"
            )
    return lines


def _bet_amounts(limits: ServerLimits, demand: Demand) -> list[str]:
    lines = []
    low, high = demand.amount
    smallest = limits.number("MIN_BET_AMOUNT")
    largest = limits.number("MAX_BET_AMOUNT")
    within = (
        f"{min(max(low, math.ceil(smallest)), math.floor(largest))}-"
        f"{max(min(high, math.floor(largest)), math.ceil(smallest))}"
    )
    for name, limit, outside, beyond, side in (
        ("MIN_BET_AMOUNT", smallest, low < smallest, low, "below"),
        ("MAX_BET_AMOUNT", largest, high > largest, high, "above"),
    ):
        if outside:
            lines.append(
                f"--amount {low}-{high} goes {side} "
                f"{name}={_plain(limit)} (bets refused with BET_AMOUNT_OUT_OF_RANGE): use --amount "
                f"{within} or start the server with {name}={beyond}"
            )
    return lines


def check_credits(
    demand: Demand, balance: float, max_balance: float | None, *, signed_up: bool
) -> list[str]:
    """Open loop: whether the players' credits carry the plan's stakes to the end of the run."""
    if demand.mode != "open" or not demand.betting:
        return []
    bets = demand.bets_per_player()
    low, high = demand.amount
    stakes = bets * (low + high) / 2
    lines = []
    if stakes > balance:
        enough = _round_up(2 * stakes)
        where = (
            f"start the server with STARTING_CREDITS={enough} (signed-up players get it)"
            if signed_up
            else f"seed them with more (`thisthat seed --credits {enough}`)"
        )
        if max_balance is not None and enough > max_balance:
            where = f"{enough:,} credits would pass MAX_BALANCE={_plain(max_balance)}"
        lines.append(
            f"INSUFFICIENT_CREDITS before the end: players hold {balance:,.0f} credits and this "
            f"run stakes up to about {stakes:,.0f} each ({bets:,} bets of {low}-{high} credits "
            f"in {demand.run_s:g} s): {where}, or bet less (--amount, --rate, --duration)"
        )
    elif max_balance is not None and balance + stakes > max_balance:
        lines.append(
            f"BALANCE_CAP_EXCEEDED before the end: players hold {balance:,.0f} credits, and with "
            f"the potential payouts of about {stakes:,.0f} credits of open bets they pass "
            f"MAX_BALANCE={_plain(max_balance)}: seed them with fewer (`thisthat seed --credits "
            f"{_round_up(2 * stakes)}`)"
        )
    return lines


def check_token_expiry(players: list[dict[str, Any]], demand: Demand, now: float) -> list[str]:
    """The players file's tokens must outlive the run (the server ends an expired socket)."""
    expiries = [
        expiry
        for player in _sample(players)
        if (expiry := _token_expiry(player.get("accessToken"))) is not None
    ]
    if not expiries:
        return []
    left = min(expiries) - now
    if left >= demand.run_s + TOKEN_MARGIN_S:
        return []
    when = "have expired" if left <= 0 else f"expire in {left:,.0f} s"
    return [
        f"the players' access tokens {when}, before the run (about "
        f"{demand.run_s + TOKEN_MARGIN_S:,.0f} s with connecting) ends: seed them again "
        f"(`thisthat seed ... --token-ttl {_duration(2 * (demand.run_s + TOKEN_MARGIN_S))}`)"
    ]


def _token_expiry(token: Any) -> float | None:
    """A JWT's `exp`, read without its key (the server checks the signature)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    return float(expiry) if isinstance(expiry, (int, float)) else None


def _sample(players: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(players) <= BALANCE_SAMPLE:
        return list(players)
    step = (len(players) - 1) / (BALANCE_SAMPLE - 1)
    return [players[round(index * step)] for index in range(BALANCE_SAMPLE)]


def _plain(value: float) -> str:
    """A setting's value as the environment spells it: 1000000, not 1e+06."""
    return str(int(value)) if value == int(value) else f"{value:f}".rstrip("0")


def _per(window_s: int) -> str:
    return "a second" if window_s == 1 else f"per {window_s:,} s"


def _round_up(amount: float) -> int:
    """The next 1, 2 or 5 times a power of ten: a value an operator types."""
    if amount <= 1:
        return 1
    power = 10 ** math.floor(math.log10(amount))
    for step in (1, 2, 5, 10):
        if step * power >= amount:
            return int(step * power)
    return int(10 * power)


def _duration(seconds: float) -> str:
    hours = math.ceil(seconds / 3600)
    return f"{hours}h" if seconds > 1800 else f"{math.ceil(seconds / 60)}m"


async def fetch_limits(
    http: aiohttp.ClientSession, base_url: str, token: str | None
) -> ServerLimits:
    """The server's limits, or PreflightRefused saying in one line how to have them published."""
    url = base_url + LIMITS_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with http.get(url, headers=headers) as response:
            status = response.status
            body = await response.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise PreflightRefused(
            f"cannot reach {base_url} ({type(error).__name__}): start the server or give its "
            f"--url, {SKIP_HINT}"
        ) from None
    if status == 404:
        raise PreflightRefused(
            f"{base_url} does not publish its limits (GET {LIMITS_PATH} answered 404): start the "
            "server with LOADTEST_LIMITS_ENDPOINT=true (a production node also needs "
            f"METRICS_TOKEN, given to the load client in its environment), {SKIP_HINT}"
        )
    if status == 401:
        raise PreflightRefused(
            f"GET {LIMITS_PATH} needs the server's METRICS_TOKEN"
            + (" and refused the one given" if token else "")
            + f": set METRICS_TOKEN in the load client's environment, {SKIP_HINT}"
        )
    if status != 200:
        raise PreflightRefused(f"GET {LIMITS_PATH} answered {status}: {SKIP_HINT}")
    try:
        return ServerLimits.parse(orjson.loads(body))
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        raise PreflightRefused(
            f"GET {LIMITS_PATH} answered something else than the limits: {SKIP_HINT}"
        ) from None


async def read_balances(
    http: aiohttp.ClientSession, base_url: str, players: list[dict[str, Any]]
) -> tuple[float | None, list[str]]:
    """The lowest balance of a few players (GET /auth/me with their tokens), and a line if the
    server refuses their tokens."""
    balances: list[float] = []
    refused: Counter[str] = Counter()
    for player in _sample(players):
        headers = {"Authorization": f"Bearer {player.get('accessToken', '')}"}
        try:
            async with http.get(base_url + "/auth/me", headers=headers) as response:
                status, body = response.status, orjson.loads(await response.read())
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
            continue  # the run's own connections will say what is wrong
        if status == 200:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                balances.append(float(body["user"]["balance"]))
        else:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            refused[str(error.get("code", status))] += 1
    lines = []
    if refused:
        codes = ", ".join(f"{code} for {count}" for code, count in refused.items())
        lines.append(
            f"the server refuses the players' access tokens ({codes} of "
            f"{len(_sample(players))} tried): seed them again against this server (`thisthat seed "
            "... --token-ttl 2h`, with its JWT_ACCESS_SECRET or DATA_DIR)"
        )
    return (min(balances) if balances else None), lines


@dataclass(frozen=True)
class Preflight:
    """What the preflight found: problems stop the run; the summary says what was checked."""

    problems: list[str]
    summary: str


async def run_preflight(
    plan: LoadPlan, *, signups: int = 0, token: str | None = None, now: float | None = None
) -> Preflight:
    """Check the plan against the server's limits, the players' tokens and their credits.

    Raises PreflightRefused when the server does not publish its limits."""
    demand = Demand.of(plan, signups)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        limits = await fetch_limits(http, plan.base_url, token)
        problems = check_limits(limits, demand)
        if signups:
            balance: float | None = limits.number("STARTING_CREDITS")
        else:
            problems += check_token_expiry(
                plan.players, demand, time.time() if now is None else now
            )
            balance, refused = await read_balances(http, plan.base_url, plan.players)
            problems += refused
    if balance is not None:
        problems += check_credits(
            demand, balance, limits.number("MAX_BALANCE"), signed_up=bool(signups)
        )
    return Preflight(problems, _summary(limits, demand, balance))


def _summary(limits: ServerLimits, demand: Demand, balance: float | None) -> str:
    parts = [f"{demand.sockets:,} sockets from {limits.client_address}"]
    if demand.mode == "open":
        parts.append(
            f"{demand.requests_per_player_s * demand.bet_share:.2f} bets/s and "
            f"{demand.requests_per_player_s * (1 - demand.bet_share):.2f} other events/s per player"
        )
    if demand.mode == "open" and demand.betting and balance is not None:
        low, high = demand.amount
        parts.append(
            f"up to about {demand.bets_per_player() * (low + high) / 2:,.0f} of "
            f"{balance:,.0f} credits staked per player"
        )
    if not limits.rate_limited:
        parts.append("RATE_LIMIT_ENABLED=false")
    return "the server's limits fit the plan (" + ", ".join(parts) + ")"


def metrics_token() -> str | None:
    """The token GET /loadtest/limits needs when the server sets METRICS_TOKEN: the same
    variable in the load client's environment."""
    return os.environ.get("METRICS_TOKEN") or None


def print_preflight(found: Preflight, printer: Printer) -> None:
    for line in found.problems:
        printer(f"preflight: {line}")
    if not found.problems:
        printer(f"preflight: {found.summary}")
