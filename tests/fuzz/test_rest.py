"""Every REST endpoint in the OpenAPI document, sent hostile requests over real HTTP.

Bodies come from the payload type each endpoint documents (so a new endpoint is fuzzed as soon
as it is documented), besides bytes that are not JSON at all; headers carry odd bearer tokens
signed with the server's own keys; path parameters get odd text. For each request: never a 500
or INTERNAL_ERROR, no error or traceback in the log, and a refused request adds no user,
refresh token, bet or ledger entry.
"""

from __future__ import annotations

import json
import string
import uuid
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from game.errors import ErrorCode
from server.http import apidocs
from server.settings import SETTINGS
from server.wire import schemas
from tests.fuzz.conftest import DERANDOMIZE, EXAMPLES, Budget, LogWatch, table_counts
from tests.fuzz.strategies import TEXT_CHARS, Targets, json_values, payloads, signed_tokens
from tests.players import Player

ENDPOINTS: Final = sorted(
    (method.upper(), path)
    for path, operations in apidocs.openapi()["paths"].items()
    for method in operations
)
# Header text aiohttp will send: printable, no line breaks.
MULTIBYTE: Final = st.characters(min_codepoint=0x80, exclude_categories=["Cs"])
HEADER_TEXT: Final = st.text(string.printable.strip() + " ", max_size=60)


def body_schema(method: str, path: str) -> type[msgspec.Struct] | None:
    """The payload type the OpenAPI document gives for this endpoint's JSON body."""
    operation = apidocs.openapi()["paths"][path][method.lower()]
    ref = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema", {})
        .get("$ref")
    )
    if ref is None:
        return None
    schema = getattr(schemas, ref.rsplit("/", 1)[-1])
    assert issubclass(schema, msgspec.Struct), ref
    return schema


_requests: dict[tuple[str, str, str], st.SearchStrategy[Any]] = {}


def requests(method: str, path: str, app: web.Application, player: Player) -> Any:
    """(path, headers, body) for one endpoint."""
    key = (method, path, player.access_token)
    if key in _requests:
        return _requests[key]
    settings_ = app[SETTINGS]
    odd_tokens = signed_tokens(
        [settings_.jwt_access_secret, settings_.jwt_refresh_secret],
        settings_.jwt_issuer,
        settings_.jwt_audience,
        uuid.UUID(player.user_id),
    )
    own_tokens = st.sampled_from([player.access_token, player.refresh_token])
    targets = Targets(
        valid={
            "username": st.just(player.username)
            | st.from_regex(r"[A-Za-z0-9_]{3,50}", fullmatch=True),
            # The rule is 8-72 bytes of UTF-8; the schema can only count characters.
            "password": st.just(player.password)
            | st.text(TEXT_CHARS, min_size=1, max_size=72)
            | st.text(MULTIBYTE, min_size=8, max_size=72),
            "refreshToken": own_tokens,
        },
        odd={"refreshToken": odd_tokens},
    )
    schema = body_schema(method, path)
    json_bodies = json_values if schema is None else payloads(schema, targets)
    bodies = (
        st.none()
        | json_bodies.map(lambda value: json.dumps(value).encode())
        | json_bodies.map(lambda value: json.dumps(value).encode())
        | st.binary(max_size=80)
    )
    authorization = st.one_of(
        st.none(),
        own_tokens.map(lambda token: f"Bearer {token}"),
        odd_tokens.map(lambda token: f"Bearer {token}"),
        odd_tokens.map(lambda token: f"Bearer {token}"),
        HEADER_TEXT,
        HEADER_TEXT.map(lambda text: f"Bearer {text}"),
    )
    content_type = st.sampled_from([None, "application/json", "text/plain", "multipart/form-data"])
    segment = st.text(TEXT_CHARS, max_size=30) | st.sampled_from(
        ["..", "../../etc/passwd", "%2e%2e", "index.html", "play.js", ""]
    )
    query = st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=2)

    def build(
        segment: str, query: dict[str, str], auth: str | None, kind: str | None, body: bytes | None
    ) -> tuple[str, dict[str, str], bytes | None]:
        target = path.replace("{file}", quote(segment, safe=""))
        if query:
            target += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
        headers = {}
        if auth is not None:
            headers["Authorization"] = auth
        if kind is not None:
            headers["Content-Type"] = kind
        return target, headers, body

    _requests[key] = st.builds(build, segment, query, authorization, content_type, bodies)
    return _requests[key]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_every_endpoint_answers_hostile_requests_without_a_server_error(
    method: str,
    path: str,
    data: st.DataObject,
    fuzz_server: tuple[str, web.Application],
    rest_player: Player,
    http: aiohttp.ClientSession,
    db: asyncpg.Pool,
    log_watch: LogWatch,
    budget: Budget,
) -> None:
    base, app = fuzz_server
    target, headers, body = data.draw(requests(method, path, app, rest_player), label="request")
    if budget.spent():
        return
    log_watch.start()
    before = await table_counts(db)
    url = URL(base + target, encoded=True)
    async with http.request(method, url, data=body, headers=headers) as response:
        status = response.status
        raw = await response.read()
    what = (method, target, headers, body[:200] if body else body, status, raw[:300])
    assert status < 500 or (path == "/readyz" and status == 503), what
    if response.content_type == "application/json" and status >= 400:
        error = json.loads(raw)["error"]
        assert error["code"] in {code.value for code in ErrorCode}, what
        assert error["code"] != ErrorCode.INTERNAL_ERROR.value, what
    if status >= 400:
        assert await table_counts(db) == before, what
    log_watch.check(what)


@pytest.fixture
async def rest_player(
    fuzz_server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> Player:
    """A signed-up player whose name, password and tokens the requests aim at."""
    return await Player(fuzz_server[0], http).signup()


@pytest.fixture(autouse=True)
def _enough_examples_ran(budget: Budget) -> Any:
    yield
    budget.check()
