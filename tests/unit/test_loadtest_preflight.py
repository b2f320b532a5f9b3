"""The load client's preflight, without a server: a plan against published limits, credits and
token lifetimes; and the limits endpoint publishes no secret."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from loadtest.plan import LoadPlan, parse_mix
from loadtest.preflight import (
    Demand,
    ServerLimits,
    check_credits,
    check_limits,
    check_token_expiry,
)
from server.http.loadtest_limits import PUBLISHED, published_settings
from server.settings import SECRETS, Settings

DEFAULTS = published_settings(Settings())


def limits(**changes: Any) -> ServerLimits:
    return ServerLimits(
        settings={**orjson.loads(orjson.dumps(DEFAULTS, default=str)), **changes},
        feed="replay",
        open_markets=5,
        trusted_proxies=False,
        client_address="127.0.0.1",
    )


def plan(players: int, **options: Any) -> LoadPlan:
    return LoadPlan(
        base_url="http://127.0.0.1:1",
        players=[{"id": str(index)} for index in range(players)],
        **options,
    )


def test_the_limits_endpoint_publishes_no_secret_setting() -> None:
    assert not set(PUBLISHED) & set(SECRETS)
    assert not {name for name in PUBLISHED if "secret" in name or "token" in name}
    assert set(DEFAULTS) == {name.upper() for name in PUBLISHED}
    assert DEFAULTS["RATE_LIMIT_CONNECTIONS_PER_IP"] == "50/1"


def test_more_sockets_than_the_connection_cap_name_the_setting_and_the_value() -> None:
    found = check_limits(limits(), Demand.of(plan(1000, rate=100)))

    assert found == [
        "RATE_LIMIT_CONNECTIONS_PER_IP=50/1 refuses up to 950 of 1,000 sockets from 127.0.0.1 "
        "(at most 50 new connections a second from one address): start the server with "
        "RATE_LIMIT_CONNECTIONS_PER_IP=2000/1 or RATE_LIMIT_ENABLED=false"
    ]


def test_a_plan_within_the_limits_finds_nothing() -> None:
    demand = Demand.of(plan(10_000, rate=1000, duration_s=60, warmup_s=5))
    raised = limits(
        RATE_LIMIT_CONNECTIONS_PER_IP="20000/1",
        RATE_LIMIT_BETS_PER_USER="1000/1",
        RATE_LIMIT_EVENTS_PER_USER="1000/1",
    )

    assert check_limits(raised, demand) == []
    assert check_credits(demand, 100_000, 1_000_000, signed_up=False) == []


def test_rate_limits_switched_off_leave_only_the_limits_that_always_hold() -> None:
    demand = Demand.of(plan(1000, rate=300_000, mix=parse_mix("bet=1")))

    found = check_limits(limits(RATE_LIMIT_ENABLED=False), demand)

    assert len(found) == 1
    assert found[0].startswith("WS_FRAMES_PER_S=200 closes a socket")
    assert "WS_FRAMES_PER_S=600" in found[0]


def test_bets_above_the_per_player_limit_name_it_and_a_value_that_fits() -> None:
    demand = Demand.of(plan(10, rate=300, mix=parse_mix("bet=1")))

    (found,) = check_limits(limits(), demand)

    assert found.startswith("RATE_LIMIT_BETS_PER_USER=20/1 refuses bets past 20 per player")
    assert "sends up to 31" in found
    assert "RATE_LIMIT_BETS_PER_USER=62/1 or RATE_LIMIT_ENABLED=false" in found


def test_a_rare_operation_of_the_mix_is_judged_by_its_share() -> None:
    # 30 requests a second per player, one in ten a bet: about 3 bets a second, well under 20.
    demand = Demand.of(plan(10, rate=300, mix=parse_mix("bet=10,wallet=90")))

    found = check_limits(limits(RATE_LIMIT_EVENTS_PER_USER="1000/1"), demand)

    assert found == []


def test_a_closed_loop_is_judged_at_a_fast_ack() -> None:
    demand = Demand.of(plan(10_000, mode="closed", concurrency=400, mix=parse_mix("bet=1")))

    assert check_limits(limits(RATE_LIMIT_CONNECTIONS_PER_IP="20000/1"), demand) == [
        "RATE_LIMIT_BETS_PER_USER=20/1 refuses bets past 20 per player a second, and this run "
        "sends up to 1,000 (a closed loop sends a player's next request as soon as its ack is "
        "back, judged at 1000/s per lane): start the server with RATE_LIMIT_BETS_PER_USER=2000/1 "
        "or RATE_LIMIT_ENABLED=false"
    ]
    raised = limits(RATE_LIMIT_CONNECTIONS_PER_IP="20000/1", RATE_LIMIT_BETS_PER_USER="1000/1")
    assert check_limits(raised, demand) == []


def test_sign_ups_past_the_per_address_limit_and_short_tokens_are_named() -> None:
    demand = Demand.of(plan(200, rate=100, duration_s=1800), signups=200)

    found = check_limits(limits(RATE_LIMIT_CONNECTIONS_PER_IP="1000/1"), demand)

    assert len(found) == 2, found
    assert found[0].startswith("RATE_LIMIT_SIGNUP_PER_IP=10/3600 refuses 190 of the 200 sign-ups")
    assert "RATE_LIMIT_SIGNUP_PER_IP=400/3600" in found[0]
    assert found[1].startswith("JWT_ACCESS_EXPIRES_IN=900 ends the signed-up players' tokens")
    assert "JWT_ACCESS_EXPIRES_IN=2h" in found[1]


def test_a_player_listed_more_often_than_sockets_per_user_allows() -> None:
    players = [{"id": "same"}] * 12
    demand = Demand.of(LoadPlan(base_url="u", players=players, rate=12))

    (found,) = check_limits(limits(), demand)

    assert found.startswith("SOCKETS_PER_USER=10 refuses sockets of players listed 12 times")


def test_amounts_outside_the_stake_range_and_no_open_market() -> None:
    demand = Demand.of(plan(10, rate=10, amount=(5, 20_000)))
    closed = limits()
    closed = ServerLimits(closed.settings, "off", 0, False, "127.0.0.1")

    found = check_limits(closed, demand)

    assert found[0].startswith("--amount 5-20000 goes below MIN_BET_AMOUNT=10")
    assert "use --amount 10-10000 or start the server with MIN_BET_AMOUNT=5" in found[0]
    assert "MAX_BET_AMOUNT=20000" in found[1]
    assert found[2].startswith("the server has no open market")
    assert "FEED_REPLAY_LOOP=true" in found[2]


def test_stakes_past_the_players_credits_are_refused_before_the_start() -> None:
    demand = Demand.of(plan(6, rate=20, duration_s=3, mix=parse_mix("bet=1"), amount=(10, 20)))

    (seeded,) = check_credits(demand, 30, 1_000_000, signed_up=False)
    (signed_up,) = check_credits(demand, 30, 1_000_000, signed_up=True)

    assert seeded.startswith("INSUFFICIENT_CREDITS before the end: players hold 30 credits")
    assert "`thisthat seed --credits 500`" in seeded
    assert "STARTING_CREDITS=500" in signed_up
    assert check_credits(demand, 1000, 1_000_000, signed_up=False) == []


def test_credits_near_the_balance_cap_are_named() -> None:
    demand = Demand.of(plan(6, rate=20, duration_s=3, mix=parse_mix("bet=1"), amount=(10, 20)))

    (found,) = check_credits(demand, 999_990, 1_000_000, signed_up=False)

    assert found.startswith("BALANCE_CAP_EXCEEDED before the end")
    assert "MAX_BALANCE=1000000" in found


def test_closed_and_idle_loops_have_no_credit_estimate() -> None:
    for mode in ("closed", "idle"):
        demand = Demand.of(plan(6, mode=mode, mix=parse_mix("bet=1")))
        assert check_credits(demand, 1, 1_000_000, signed_up=False) == []


def token(expires_at: float) -> str:
    claims = base64.urlsafe_b64encode(orjson.dumps({"exp": expires_at})).rstrip(b"=").decode()
    return f"header.{claims}.signature"


def test_tokens_that_expire_before_the_run_ends_are_named() -> None:
    now = 1_000_000.0
    players = [{"id": "1", "accessToken": token(now + 100)}]
    demand = Demand.of(LoadPlan(base_url="u", players=players, duration_s=60))

    (found,) = check_token_expiry(players, demand, now)

    assert found.startswith("the players' access tokens expire in 100 s, before the run")
    assert "--token-ttl" in found
    long_lived = [{"id": "1", "accessToken": token(now + 7200)}]
    assert check_token_expiry(long_lived, demand, now) == []
    assert check_token_expiry([{"id": "1", "accessToken": "opaque"}], demand, now) == []
