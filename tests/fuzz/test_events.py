"""Every registered Socket.IO event, sent hostile payloads over a real socket.

The events come from the router's registry, so a new event is fuzzed as soon as it exists. For
each example: an ack arrives, it is a protocol answer and never INTERNAL_ERROR, nothing is
logged at WARNING or above and no traceback, and refused input leaves the player's balance,
bets and ledger as they were (only an accepted `bet:place` or `reward:claim` may move them), and
its account settings (only an accepted `account:update` sets what it was asked to).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from game.errors import ErrorCode
from server.settings import SETTINGS
from server.sockets.events import register_all
from server.sockets.router import EventRouter
from tests.fuzz.conftest import (
    DERANDOMIZE,
    EXAMPLES,
    Budget,
    LogWatch,
    snapshot,
)
from tests.fuzz.strategies import Targets, json_values, payloads, signed_tokens, uuid_inputs
from tests.players import Player
from tests.raw_socket import RawSocket

# The registry the app builds: every event the server answers, whatever is added later.
router = EventRouter()
register_all(router)

# Events whose accepted answer moves the player's money.
MOVES_MONEY: Final = {"bet:place", "reward:claim"}
ACK_TIMEOUT_S: Final = 10
CODES: Final = {code.value for code in ErrorCode}


# Values inside the game's rules (not only the schema's), so fuzzed bets reach the batch.
BET_VALUES: Final = {
    "amount": st.decimals(min_value=10, max_value=200, places=2).map(str),
    "expectedOdds": st.decimals(min_value="0.0001", max_value="0.9999", places=4).map(str)
    | st.none(),
    "maxSlippage": st.decimals(min_value=0, max_value="0.9999", places=4).map(str),
}
_strategies: dict[tuple[str, uuid.UUID, str], st.SearchStrategy[Any]] = {}


def strategy(event: str, app: web.Application, market_id: uuid.UUID, player: Player) -> Any:
    """Payloads for `event`, aimed at the real market and, for tokens, at the player."""
    key = (event, market_id, player.access_token)
    if key not in _strategies:
        settings = app[SETTINGS]
        tokens = signed_tokens(
            [settings.jwt_access_secret, settings.jwt_refresh_secret],
            settings.jwt_issuer,
            settings.jwt_audience,
            uuid.UUID(player.user_id),
        )
        targets = Targets(
            valid={
                "uuid": st.just(str(market_id)),
                "token": st.just(player.access_token),
                **BET_VALUES,
            },
            odd={"uuid": uuid_inputs([market_id]), "token": tokens},
        )
        _strategies[key] = payloads(router.routes[event].schema, targets)
    return _strategies[key]


def check_ack(event: str, payload: object, ack: object) -> bool:
    """The ack is the protocol's envelope; returns whether the event was accepted."""
    assert isinstance(ack, dict), (event, payload, ack)
    assert isinstance(ack.get("ok"), bool), (event, payload, ack)
    if ack["ok"]:
        assert "data" in ack, (event, payload, ack)
        return True
    error = ack["error"]
    assert error["code"] in CODES, (event, payload, ack)
    assert error["code"] != ErrorCode.INTERNAL_ERROR.value, (event, payload, ack)
    if error["code"] == ErrorCode.VALIDATION_ERROR.value and "details" in error:
        assert isinstance(error["details"].get("field"), str), (event, payload, ack)
    return False


@pytest.mark.parametrize("event", sorted(router.routes))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_every_event_answers_hostile_payloads_with_a_protocol_answer(
    event: str,
    data: st.DataObject,
    fuzz_server: tuple[str, web.Application],
    fuzz_player: Player,
    market_id: uuid.UUID,
    db: asyncpg.Pool,
    log_watch: LogWatch,
    budget: Budget,
) -> None:
    payload = data.draw(strategy(event, fuzz_server[1], market_id, fuzz_player), label="payload")
    if budget.spent():
        return
    log_watch.start()
    before = await snapshot(db, fuzz_player.user_id)
    ack = await fuzz_player.sockets[0].call(event, payload, timeout=ACK_TIMEOUT_S)
    accepted = check_ack(event, payload, ack)
    if accepted and event == "account:update":
        before = dataclasses.replace(before, anonymous=payload["anonymous"])
    if not accepted or event not in MOVES_MONEY:
        assert await snapshot(db, fuzz_player.user_id) == before, (event, payload, ack)
    log_watch.check((event, payload))
    assert fuzz_player.sockets[0].connected, (event, payload)


@pytest.fixture(autouse=True)
def _enough_examples_ran(budget: Budget) -> Any:
    yield
    budget.check()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=json_values.filter(lambda value: not isinstance(value, str)))
async def test_an_event_name_that_is_not_a_string_gets_validation_error(
    name: object,
    fuzz_server: tuple[str, web.Application],
    name_socket: RawSocket,
    log_watch: LogWatch,
    budget: Budget,
) -> None:
    if budget.spent():
        return
    ack_id = budget.ran
    await name_socket.send(f"42{ack_id}" + json.dumps([name, {}], allow_nan=False))
    ack = await name_socket.ack(ack_id, ACK_TIMEOUT_S)
    assert ack["ok"] is False and ack["error"]["code"] == "VALIDATION_ERROR", (name, ack)
    # The refusal's one line a second is expected; a traceback or an error is not.
    log_watch.caplog.records[:] = [
        r for r in log_watch.caplog.records if r.getMessage() != "bad socket.io packet"
    ]
    log_watch.check(name)


@pytest.fixture
async def name_socket(
    fuzz_server: tuple[str, web.Application], fuzz_player: Player, http: aiohttp.ClientSession
) -> AsyncIterator[RawSocket]:
    raw = await RawSocket(fuzz_server[0], http).open()
    await raw.authenticate(fuzz_player.access_token)
    yield raw
    await raw.close()
