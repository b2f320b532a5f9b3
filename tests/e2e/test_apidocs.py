"""The API documents: generated from the code, in agreement with docs/protocol.md and the
registered events and routes, accepted by real validators, and true of what the server answers."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from openapi_spec_validator import validate

from server.http import apidocs
from server.sockets.events import register_all
from server.sockets.router import EventRouter
from server.wire import replies
from tests.conftest import ServerFactory
from tests.node_tools import node_tools
from tests.players import Player

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def game_events() -> EventRouter:
    router = EventRouter()
    register_all(router)
    return router


router = game_events()


def documented_in_protocol_md() -> tuple[set[str], set[str]]:
    """(client events, server pushes) named in the first column of docs/protocol.md's tables."""
    text = PROTOCOL_MD.read_text()
    requests = text.split("### Requests", 1)[1].split("Details:", 1)[0]
    pushes = text.split("| event | who gets it | payload |", 1)[1].split("\n\n", 1)[0]

    def first_column(table: str) -> set[str]:
        return set(re.findall(r"^\| `([a-z:]+)` \|", table, flags=re.MULTILINE))

    return first_column(requests), first_column(pushes)


async def fetch_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        return await response.json()


async def test_every_event_is_registered_documented_and_in_protocol_md(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    document = await fetch_json(http, server[0] + "/asyncapi.json")
    operations = document["operations"].values()
    requests_in_doc = {op["title"] for op in operations if op["action"] == "receive"} - {"connect"}
    pushes_in_doc = {op["title"] for op in operations if op["action"] == "send"}
    requests_in_md, pushes_in_md = documented_in_protocol_md()

    assert requests_in_doc == set(router.routes) == requests_in_md
    assert pushes_in_doc == set(apidocs.PUSHES) == pushes_in_md
    for name, route in router.routes.items():
        message = document["components"]["messages"][apidocs.component_key(name)]
        assert message["name"] == name
        assert message["payload"] == {"$ref": f"#/components/schemas/{route.schema.__name__}"}


def test_a_registered_event_without_a_documented_ack_fails_generation() -> None:
    extended = type(router)()
    extended.routes = dict(router.routes)
    route = next(iter(router.routes.values()))
    extended.add("market:forget", route.schema, route.handler)
    with pytest.raises(LookupError, match="market:forget"):
        apidocs.asyncapi(extended)


def test_protocol_md_parsing_sees_a_missing_event(tmp_path: Path, monkeypatch: Any) -> None:
    """The agreement test above would notice an event dropped from docs/protocol.md."""
    trimmed = PROTOCOL_MD.read_text().replace("| `reward:claim` |", "| reward claim |")
    copy = tmp_path / "protocol.md"
    copy.write_text(trimmed)
    monkeypatch.setattr(sys.modules[__name__], "PROTOCOL_MD", copy)
    requests, _ = documented_in_protocol_md()
    assert "reward:claim" not in requests
    assert requests != set(router.routes)


async def test_openapi_document_is_valid_and_lists_every_route(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    document = await fetch_json(http, server[0] + "/openapi.json")
    validate(document)  # raises on any violation of OpenAPI 3.1
    assert document["openapi"] == "3.1.0"
    routed = set()
    for resource in server[1].router.resources():
        path = resource.canonical
        if path.startswith("/socket.io"):
            continue
        routed.add(path)
    assert routed == set(document["paths"])
    signup = document["paths"]["/auth/signup"]["post"]["requestBody"]
    schema = signup["content"]["application/json"]["schema"]
    assert document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]["required"] == [
        "username",
        "password",
    ]


def test_asyncapi_schemas_are_draft07_with_refs_into_components() -> None:
    document = apidocs.asyncapi(router)
    text = json.dumps(document)
    assert "$defs" not in text and "prefixItems" not in text
    schemas = document["components"]["schemas"]
    for target in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text):
        assert target in schemas


def test_draft07_rewrites_defs_and_tuples() -> None:
    schema = {
        "$defs": {"A": {"type": "string"}},
        "type": "array",
        "prefixItems": [{"$ref": "#/$defs/A"}, {"type": "integer"}],
        "items": False,
    }
    assert apidocs.draft07(schema) == {
        "type": "array",
        "items": [{"$ref": "#/components/schemas/A"}, {"type": "integer"}],
        "additionalItems": False,
    }


async def test_asyncapi_document_passes_the_official_parser(
    server: tuple[str, web.Application], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    tools = node_tools()
    document = await fetch_json(http, server[0] + "/asyncapi.json")
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    process = await asyncio.create_subprocess_exec(
        "node",
        str(tools / "validate-asyncapi.mjs"),
        str(path),
        cwd=tools,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, out.decode() + err.decode()
    assert "valid AsyncAPI 3.0.0" in out.decode()
    expected = len(router.routes) + len(apidocs.PUSHES) + 1  # + connect
    assert f"{expected} operations" in out.decode()


async def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    """The validator really validates: a dangling ref fails it."""
    tools = node_tools()
    document = apidocs.asyncapi(router)
    document["components"]["schemas"]["BetPlace"]["properties"]["side"] = {"$ref": "#/$defs/X"}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    process = await asyncio.create_subprocess_exec(
        "node",
        str(tools / "validate-asyncapi.mjs"),
        str(path),
        cwd=tools,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 1
    assert "invalid-ref" in out.decode()


async def test_real_answers_match_their_documented_shapes(
    server: tuple[str, web.Application], http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    await player.connect()
    session = await player.next("session")
    msgspec.convert(session, replies.SessionPush, strict=False)
    for event, payload in [
        ("markets:list", {"status": "all"}),
        ("bets:list", {}),
        ("wallet:get", {}),
        ("wallet:history", {}),
        ("reward:claim", {}),
        ("leaderboard:get", {}),
        ("leaderboard:subscribe", {}),
        ("sync", {}),
        ("auth:refresh", {"token": player.access_token}),
    ]:
        ack = await player.call(event, payload)
        assert ack["ok"], (event, ack)
        msgspec.convert(ack["data"], apidocs.ACKS[event], strict=False)
    refused = await player.call("market:get", {"marketId": "0" * 36})
    msgspec.convert(refused, replies.AckError, strict=False)
    balance = await player.next("balance")
    msgspec.convert(balance, replies.BalancePush, strict=False)
    status, body, _ = await player.post(
        "/auth/login", {"username": player.username, "password": player.password}
    )
    assert status == 200
    msgspec.convert(body, replies.AuthSession, strict=False)
    await player.close()


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_traceback(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is in the dev extra"
    base, _ = await start_server(rate_limit_enabled=False)
    caplog.set_level(logging.ERROR)
    process = await asyncio.create_subprocess_exec(
        cli,
        "run",
        f"{base}/openapi.json",
        "--url",
        base,
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    report = out.decode()
    assert process.returncode == 0, report[-6000:]
    assert "Traceback" not in report
    # aiohttp's HTTP parser logs the probes' malformed requests (a NUL in a header) it refused
    # with a 400; everything else logged at ERROR is a failure of the server.
    failures = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        and not (record.exc_info and isinstance(record.exc_info[1], BadHttpMessage))
    ]
    assert not failures
