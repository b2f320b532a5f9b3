"""The API documents, generated from the msgspec types: AsyncAPI 3.0 for Socket.IO at
`/asyncapi.json`, OpenAPI 3.1 for REST at `/openapi.json`.

Payload schemas come from the types the server validates with (server/wire/schemas.py) and the
registered events (server/sockets/router.py); answers from server/wire/replies.py. A new event without a
documented ack, or a push without a documented payload, fails `asyncapi()` loudly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec
from aiohttp import web

from server.sockets.router import EventRouter
from server.wire import replies, schemas
from server.wire.codec import dumps_bytes

TITLE: Final = "ThisThat"
VERSION: Final = "1.0.0"
SCHEMAS_REF: Final = "#/components/schemas/{name}"

# What each event's ack carries on success.
ACKS: Final[dict[str, type[replies.Reply]]] = {
    "markets:list": replies.MarketsPage,
    "market:get": replies.WatchedMarketReply,
    "market:history": replies.OddsHistory,
    "market:activity": replies.ActivityPage,
    "market:subscribe": replies.WatchedMarketsReply,
    "market:unsubscribe": replies.Nothing,
    "bet:place": replies.BetReply,
    "bets:list": replies.BetsPage,
    "wallet:get": replies.Wallet,
    "wallet:history": replies.HistoryPage,
    "reward:claim": replies.RewardClaimed,
    "leaderboard:get": replies.Standings,
    "leaderboard:subscribe": replies.Nothing,
    "leaderboard:unsubscribe": replies.Nothing,
    "auth:refresh": replies.Expiry,
    "account:update": replies.UserReply,
    "sync": replies.SyncState,
    "presence:get": replies.Online,
}

# Server pushes: payload and who receives them.
PUSHES: Final[dict[str, tuple[type[replies.Reply], str]]] = {
    "session": (replies.SessionPush, "the socket, once connected"),
    "odds": (replies.OddsTick, "room market:<id>; only when the odds change"),
    "market:update": (replies.MarketReply, "room market:<id>; on any status change"),
    "market:watchers": (
        replies.WatchersPush,
        "room market:<id>; when its watchers change, at most once per PRESENCE_INTERVAL_S",
    ),
    "market:activity": (
        replies.ActivityPush,
        "room market:<id>; new bets, one batch per market per MARKET_ACTIVITY_PUSH_INTERVAL_MS "
        "from each node",
    ),
    "balance": (replies.BalancePush, "room user:<id>: every socket of the player"),
    "bet:settled": (replies.BetReply, "room user:<id>: every socket of the player"),
    "leaderboard:update": (
        replies.LeaderboardPush,
        "room leaderboard:<period>; top 20, at most once a second per period",
    ),
    "auth:expiring": (replies.Expiry, "the socket, about 60 s before its token expires"),
    "auth:expired": (
        replies.Error,
        "the socket, when its token expired unrefreshed, just before the server disconnects it: "
        "code TOKEN_EXPIRED; refresh the token and connect again",
    ),
}


def component_key(event: str) -> str:
    """AsyncAPI component keys allow [A-Za-z0-9._-]; event names use ':'."""
    return event.replace(":", ".")


def wire_types(schema: Any) -> Any:
    """Decimals are JSON numbers on the wire: a schema marked with replies.WIRE_TYPE takes that
    type, and loses msgspec's `format: decimal`, which describes decimal strings."""
    if isinstance(schema, list):
        return [wire_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: wire_types(value) for key, value in schema.items()}
    if replies.WIRE_TYPE in converted:
        converted["type"] = converted.pop(replies.WIRE_TYPE)
        converted.pop("format", None)
    return converted


def draft07(schema: Any) -> Any:
    """JSON Schema 2020-12 (msgspec's dialect) as draft-07, which AsyncAPI 3.0 schemas follow:
    `$defs` refs point into components, `prefixItems` become an items array."""
    if isinstance(schema, list):
        return [draft07(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$defs":
            continue  # hoisted into components by `components()`
        if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            converted[key] = "#/components/schemas/" + value.removeprefix("#/$defs/")
        elif key == "prefixItems":
            converted["items"] = draft07(value)
            if schema.get("items") is False:
                converted["additionalItems"] = False
        elif key == "items" and "prefixItems" in schema:
            continue
        else:
            converted[key] = draft07(value)
    return converted


def components(types: Iterable[type[Any]], *, for_asyncapi: bool) -> dict[str, Any]:
    """Every named schema the types need, keyed by type name, with refs into components."""
    _, named = msgspec.json.schema_components(list(types), ref_template=SCHEMAS_REF)
    named = {name: wire_types(schema) for name, schema in sorted(named.items())}
    if not for_asyncapi:
        return named
    return {name: draft07(schema) for name, schema in named.items()}


def ref(cls: type[Any]) -> dict[str, str]:
    return {"$ref": SCHEMAS_REF.format(name=cls.__name__)}


def asyncapi(router: EventRouter) -> dict[str, Any]:
    missing = sorted(set(router.routes) - set(ACKS))
    if missing:
        raise LookupError(f"events without a documented ack: {', '.join(missing)}")
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    channel_messages: dict[str, Any] = {}
    types: list[type[Any]] = [replies.HandshakeAuth, replies.ConnectRefusal, replies.AckError]

    def add_message(key: str, name: str, payload: dict[str, Any], summary: str) -> None:
        messages[key] = {"name": name, "title": name, "summary": summary, "payload": payload}
        channel_messages[key] = {"$ref": f"#/components/messages/{key}"}

    add_message(
        "connect",
        "connect",
        ref(replies.HandshakeAuth),
        "Socket.IO handshake: the `auth` object of the CONNECT packet",
    )
    add_message(
        "connect_error",
        "connect_error",
        ref(replies.ConnectRefusal),
        "the handshake was refused: missing, bad or expired token",
    )
    operations["connect"] = {
        "action": "receive",
        "title": "connect",
        "summary": "Connect with the access token; a refusal arrives as connect_error.",
        "channel": {"$ref": "#/channels/game"},
        "messages": [{"$ref": "#/channels/game/messages/connect"}],
        "reply": {
            "channel": {"$ref": "#/channels/game"},
            "messages": [{"$ref": "#/channels/game/messages/connect_error"}],
        },
    }
    for name, route in router.routes.items():
        key = component_key(name)
        ack = ACKS[name]
        types += [route.schema, ack]
        add_message(key, name, ref(route.schema), f"`{name}` request (client to server)")
        add_message(
            f"{key}.ack",
            f"{name} ack",
            {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["ok", "data"],
                        "properties": {"ok": {"const": True}, "data": ref(ack)},
                        "additionalProperties": False,
                    },
                    ref(replies.AckError),
                ]
            },
            f"the acknowledgement of `{name}`",
        )
        operations[key] = {
            "action": "receive",
            "title": name,
            "summary": (route.handler.__doc__ or f"handle `{name}`").strip().splitlines()[0],
            "channel": {"$ref": "#/channels/game"},
            "messages": [{"$ref": f"#/channels/game/messages/{key}"}],
            "reply": {
                "channel": {"$ref": "#/channels/game"},
                "messages": [{"$ref": f"#/channels/game/messages/{key}.ack"}],
            },
        }
    for name, (payload, audience) in PUSHES.items():
        key = "push." + component_key(name)
        types.append(payload)
        add_message(key, name, ref(payload), f"`{name}` push to {audience}")
        operations[key] = {
            "action": "send",
            "title": name,
            "summary": f"pushed to {audience}",
            "channel": {"$ref": "#/channels/game"},
            "messages": [{"$ref": f"#/channels/game/messages/{key}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{TITLE} Socket.IO",
            "version": VERSION,
            "description": (
                "Socket.IO v4 (engine.io v4) on the default namespace `/`, websocket or "
                "long-polling at `/socket.io/`. Connect with `auth: {token}`; every request is "
                "an event with one object and an ack `{ok: true, data}` or `{ok: false, error}`. "
                "Connection state recovery: connect with `auth: {token, recover: true}`; the "
                "CONNECT answer is `{sid, pid}` and every push to that socket carries its offset "
                "(a string) as its last argument; reconnecting within RECOVERY_WINDOW_S with "
                "`{token, recover: true, pid, offset}` (socket.io-client 4.6+ adds pid and offset "
                "by itself) gives back the socket id, its rooms and every missed push, in order."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:3000",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "`make run`",
                "security": [{"$ref": "#/components/securitySchemes/accessToken"}],
            }
        },
        "channels": {
            "game": {
                "address": "/",
                "title": "default namespace",
                "messages": channel_messages,
            }
        },
        "operations": operations,
        "components": {
            "schemas": components(types, for_asyncapi=True),
            "messages": messages,
            "securitySchemes": {
                "accessToken": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "token",
                    "description": (
                        "The access token travels in the Socket.IO handshake `auth` object "
                        "({token}), not in the URL; Socket.IO has no AsyncAPI binding for it."
                    ),
                }
            },
        },
    }


def _json(cls: type[Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(cls)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    wording = {
        400: "VALIDATION_ERROR",
        401: "AUTH_REQUIRED, TOKEN_INVALID, TOKEN_EXPIRED, INVALID_CREDENTIALS, REFRESH_TOKEN_REUSED",
        403: "FORBIDDEN_ORIGIN",
        404: "NOT_FOUND",
        409: "USERNAME_TAKEN",
        429: "RATE_LIMITED (with Retry-After)",
        503: "NOT_READY",
    }
    return {str(status): _json(replies.ErrorBody, wording[status]) for status in statuses}


def _body(cls: type[Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(cls)}}}


def _text(media: str, description: str) -> dict[str, Any]:
    schema = {"type": "object" if media == "application/json" else "string"}
    return {"description": description, "content": {media: {"schema": schema}}}


def openapi() -> dict[str, Any]:
    common = (400, 403, 429, 503)
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/auth/signup": {
            "post": {
                "summary": "Create an account (1000 credits) and sign in",
                "requestBody": _body(schemas.Credentials),
                "responses": {
                    "201": _json(replies.AuthSession, "signed up"),
                    **_errors(*common, 409),
                },
            }
        },
        "/auth/login": {
            "post": {
                "summary": "Sign in",
                "requestBody": _body(schemas.Credentials),
                "responses": {
                    "200": _json(replies.AuthSession, "signed in"),
                    **_errors(*common, 401),
                },
            }
        },
        "/auth/refresh": {
            "post": {
                "summary": "Exchange a refresh token for a new pair (the old one is spent)",
                "requestBody": _body(schemas.RefreshRequest),
                "responses": {"200": _json(replies.TokenPair, "new pair"), **_errors(*common, 401)},
            }
        },
        "/auth/logout": {
            "post": {
                "summary": "Revoke the refresh token's family",
                "requestBody": _body(schemas.RefreshRequest),
                "responses": {"204": {"description": "signed out"}, **_errors(*common, 401)},
            }
        },
        "/auth/me": {
            "get": {
                "summary": "The signed-in user",
                "security": bearer,
                "responses": {"200": _json(replies.UserReply, "the user"), **_errors(*common, 401)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Alive",
                "responses": {"200": _json(replies.Health, "the process runs"), **_errors(403)},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready: database, Redis and the feed's report (the report, `checks`, "
                "only with `Authorization: Bearer <METRICS_TOKEN>` when that is set)",
                "responses": {
                    "200": _json(replies.Readiness, "ready"),
                    "503": _json(replies.Readiness, "a dependency is down"),
                    **_errors(403),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (`Authorization: Bearer <METRICS_TOKEN>` when set)",
                "responses": {
                    "200": _text("text/plain", "Prometheus text format"),
                    **_errors(401, 403),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _text("application/json", "OpenAPI 3.1"), **_errors(403)},
            }
        },
        "/asyncapi.json": {
            "get": {
                "summary": "The Socket.IO interface",
                "responses": {"200": _text("application/json", "AsyncAPI 3.0"), **_errors(403)},
            }
        },
        "/play": {
            "get": {
                "summary": "The playground page",
                "responses": {"200": _text("text/html", "the page"), **_errors(403)},
            }
        },
        "/play/{file}": {
            "get": {
                "summary": "The playground's static files",
                "parameters": [
                    {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": _text("*/*", "the file"), **_errors(403, 404)},
            }
        },
        "/admin": {
            "get": {
                "summary": "The operator's read-only admin page (404 unless ADMIN_TOKEN is set)",
                "responses": {"200": _text("text/html", "the page"), **_errors(403, 404)},
            }
        },
        "/admin/admin.js": {
            "get": {
                "summary": "The admin page's script (404 unless ADMIN_TOKEN is set)",
                "responses": {"200": _text("text/javascript", "the script"), **_errors(403, 404)},
            }
        },
        "/admin/admin.css": {
            "get": {
                "summary": "The admin page's style (404 unless ADMIN_TOKEN is set)",
                "responses": {"200": _text("text/css", "the style"), **_errors(403, 404)},
            }
        },
        "/admin/state": {
            "get": {
                "summary": "What the admin page shows: nodes, sockets, rooms, feed, settlements, audit",
                "security": [{"admin": []}],
                "responses": {
                    "200": {
                        "description": "the state",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(401, 403, 404),
                },
            }
        },
        "/loadtest/limits": {
            "get": {
                "summary": "The limits and credits a load test runs into, for the load client's "
                "preflight (404 unless LOADTEST_LIMITS_ENDPOINT is true; "
                "`Authorization: Bearer <METRICS_TOKEN>` when that is set)",
                "responses": {
                    "200": {
                        "description": "settings by environment variable name (rate limits as "
                        "count/window), the feed's kind, open markets, whether proxies are "
                        "trusted, and the caller's address as the limits count it",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": [
                                        "settings",
                                        "feed",
                                        "openMarkets",
                                        "trustedProxies",
                                        "clientAddress",
                                    ],
                                    "properties": {
                                        "settings": {"type": "object"},
                                        "feed": {"enum": ["polymarket", "replay", "off"]},
                                        "openMarkets": {"type": "integer", "minimum": 0},
                                        "trustedProxies": {"type": "boolean"},
                                        "clientAddress": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **_errors(401, 403, 404, 429),
                },
            }
        },
    }
    types = [
        schemas.Credentials,
        schemas.RefreshRequest,
        replies.AuthSession,
        replies.TokenPair,
        replies.UserReply,
        replies.Health,
        replies.Readiness,
        replies.ErrorBody,
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{TITLE} REST",
            "version": VERSION,
            "description": "Auth, health and metrics. The game itself is Socket.IO: /asyncapi.json.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components(types, for_asyncapi=False),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "admin": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the ADMIN_TOKEN setting",
                },
            },
        },
    }


DOCUMENTS = web.AppKey("api_documents", dict[str, bytes])


def add_routes(app: web.Application, router: EventRouter) -> None:
    """Serve both documents; they are built once, when the app is wired."""
    app[DOCUMENTS] = {
        "/asyncapi.json": dumps_bytes(asyncapi(router)),
        "/openapi.json": dumps_bytes(openapi()),
    }

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=request.app[DOCUMENTS][request.path], content_type="application/json"
        )

    app.router.add_get("/asyncapi.json", serve)
    app.router.add_get("/openapi.json", serve)
