"""The Socket.IO handshake, sent odd `auth` objects and tokens signed with the server's own keys.

Each attempt either connects (and gets its `session`) or is refused with a token error in
`connect_error`; never an internal error, never a traceback in the log.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import aiohttp
import pytest
import socketio
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.settings import SETTINGS
from tests.fuzz.conftest import DERANDOMIZE, EXAMPLES, Budget, LogWatch
from tests.fuzz.strategies import json_values, signed_tokens, texts
from tests.players import Player

REFUSALS: Final = {"AUTH_REQUIRED", "TOKEN_INVALID", "TOKEN_EXPIRED"}
_auths: dict[str, st.SearchStrategy[Any]] = {}


def auths(app: web.Application, player: Player) -> Any:
    if player.access_token not in _auths:
        settings_ = app[SETTINGS]
        tokens = signed_tokens(
            [settings_.jwt_access_secret, settings_.jwt_refresh_secret],
            settings_.jwt_issuer,
            settings_.jwt_audience,
            uuid.UUID(player.user_id),
        )
        _auths[player.access_token] = st.one_of(
            tokens.map(lambda token: {"token": token}),
            tokens.map(lambda token: {"token": token}),
            json_values.map(lambda value: {"token": value}),
            st.dictionaries(texts, json_values, max_size=3),
        )
    return _auths[player.access_token]


@settings(
    # A handshake costs more than an event: fewer of them, the same budget.
    max_examples=max(1, EXAMPLES // 2),
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_the_handshake_answers_odd_tokens_with_a_token_error(
    data: st.DataObject,
    fuzz_server: tuple[str, web.Application],
    handshake_player: Player,
    log_watch: LogWatch,
    budget: Budget,
) -> None:
    base, app = fuzz_server
    auth = data.draw(auths(app, handshake_player), label="auth")
    if budget.spent():
        return
    log_watch.start()
    # A session of its own: engine.io's client closes the session it was given when the
    # client object is collected, which would close one shared by the examples.
    async with aiohttp.ClientSession() as session:
        client = socketio.AsyncClient(reconnection=False, http_session=session)
        refusals: list[Any] = []
        client.on("connect_error", refusals.append)
        try:
            await client.connect(base, auth=auth, transports=["websocket"], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            assert len(refusals) == 1, (auth, refusals)
            assert refusals[0]["code"] in REFUSALS, (auth, refusals)
        else:
            assert client.connected, auth
            await client.disconnect()
    log_watch.check(auth)


@pytest.fixture
async def handshake_player(
    fuzz_server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> Player:
    return await Player(fuzz_server[0], http).signup()


@pytest.fixture(autouse=True)
def _enough_examples_ran(budget: Budget) -> Any:
    yield
    budget.check()
