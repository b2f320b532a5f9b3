"""REST auth as docs/protocol.md: signup, login, refresh rotation with reuse detection, logout, me, limits."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from storage import accounts
from tests.conftest import ServerFactory
from tests.players import Player, unique_name


async def test_signup_grants_starting_credits_as_a_ledger_row(
    server: Any, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    player = await Player(server[0], http).signup()
    assert player.user["balance"] == 1000
    assert player.user["username"] == player.username
    rows = await db.fetch(
        "SELECT kind, amount, balance_after FROM ledger WHERE user_id = $1::uuid", player.user_id
    )
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("signup_bonus", Decimal("1000.00"), Decimal("1000.00"))
    ]


async def test_signup_refuses_taken_names_ignoring_case_and_bad_input(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup("Taken_Name")
    status, body, _ = await player.post(
        "/auth/signup", {"username": "taken_name", "password": "long enough"}
    )
    assert (status, body["error"]["code"]) == (409, "USERNAME_TAKEN")
    cases = [
        ({"username": "ab", "password": "long enough"}, "username"),
        ({"username": "has space", "password": "long enough"}, "username"),
        ({"username": "fine_name", "password": "short"}, "password"),
        ({"username": "fine_name", "password": "é" * 37}, "password"),  # 74 bytes
        ({"username": "fine_name", "password": "long enough", "admin": True}, "admin"),
        ({"username": 5, "password": "long enough"}, "username"),
    ]
    for body_sent, field in cases:
        status, body, _ = await player.post("/auth/signup", body_sent)
        assert status == 400, body_sent
        assert body["error"]["code"] == "VALIDATION_ERROR"
        assert body["error"]["details"]["field"] == field


async def test_login_gives_the_same_answer_for_unknown_user_and_wrong_password(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    status, body, _ = await player.post(
        "/auth/login", {"username": player.username.upper(), "password": player.password}
    )
    assert status == 200 and body["user"]["id"] == player.user_id
    wrong = await player.post(
        "/auth/login", {"username": player.username, "password": "wrong password"}
    )
    unknown = await player.post(
        "/auth/login", {"username": "nobody_here", "password": "wrong password"}
    )
    assert wrong[0] == unknown[0] == 401
    assert (
        wrong[1]
        == unknown[1]
        == {
            "error": {
                "code": "INVALID_CREDENTIALS",
                "message": "unknown username or wrong password",
            }
        }
    )


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(refresh_reuse_grace_s=0)
    player = await Player(base, http).signup()
    first = player.refresh_token
    status, rotated, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert status == 200 and rotated["refreshToken"] != first and rotated["accessExpiresIn"] == 900
    # The spent token comes back: someone else holds it. The whole family dies.
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert (status, body["error"]["code"]) == (401, "REFRESH_TOKEN_REUSED")
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": rotated["refreshToken"]})
    assert status == 401 and body["error"]["code"] == "TOKEN_INVALID"


async def test_concurrent_refreshes_of_one_token_get_the_same_pair_and_it_keeps_working(
    server: Any, http: aiohttp.ClientSession, db: asyncpg.Pool
) -> None:
    for _ in range(8):
        player = await Player(server[0], http).signup()
        results = await asyncio.gather(
            *(
                player.post("/auth/refresh", {"refreshToken": player.refresh_token})
                for _ in range(2)
            )
        )
        assert [status for status, _, _ in results] == [200, 200]
        first, second = (body for _, body, _ in results)
        assert first == second and first["refreshToken"] != player.refresh_token
        async with http.get(
            server[0] + "/auth/me", headers={"Authorization": f"Bearer {first['accessToken']}"}
        ) as response:
            assert response.status == 200
        status, rotated, _ = await player.post(
            "/auth/refresh", {"refreshToken": first["refreshToken"]}
        )
        assert status == 200 and rotated["refreshToken"] != first["refreshToken"]
    # The race stored one successor, not two: per player the signup's token and two rotations.
    assert await db.fetchval("SELECT count(*) FROM refresh_tokens") == 8 * 3


async def test_a_retry_within_the_grace_gets_the_pair_again_and_a_reuse_after_it_revokes(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(refresh_reuse_grace_s=1)
    player = await Player(base, http).signup()
    first = player.refresh_token
    status, rotated, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert status == 200
    status, again, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert (status, again) == (200, rotated)
    await asyncio.sleep(1.5)  # past the grace window
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert (status, body["error"]["code"]) == (401, "REFRESH_TOKEN_REUSED")
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": rotated["refreshToken"]})
    assert (status, body["error"]["code"]) == (401, "TOKEN_INVALID")


async def test_a_spent_token_whose_successor_was_used_is_reuse_even_within_the_grace(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    first = player.refresh_token
    _, rotated, _ = await player.post("/auth/refresh", {"refreshToken": first})
    status, _, _ = await player.post("/auth/refresh", {"refreshToken": rotated["refreshToken"]})
    assert status == 200
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": first})
    assert (status, body["error"]["code"]) == (401, "REFRESH_TOKEN_REUSED")


async def test_logout_revokes_the_family(server: Any, http: aiohttp.ClientSession) -> None:
    player = await Player(server[0], http).signup()
    _, rotated, _ = await player.post("/auth/refresh", {"refreshToken": player.refresh_token})
    status, _, _ = await player.post("/auth/logout", {"refreshToken": rotated["refreshToken"]})
    assert status == 204
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": rotated["refreshToken"]})
    assert status == 401 and body["error"]["code"] == "TOKEN_INVALID"


async def test_me_needs_an_access_token(server: Any, http: aiohttp.ClientSession) -> None:
    player = await Player(server[0], http).signup()
    async with http.get(
        server[0] + "/auth/me", headers={"Authorization": f"Bearer {player.access_token}"}
    ) as response:
        assert response.status == 200
        assert (await response.json())["user"]["username"] == player.username
    for header in (
        {},
        {"Authorization": f"Bearer {player.refresh_token}"},
        {"Authorization": "Bearer junk"},
    ):
        async with http.get(server[0] + "/auth/me", headers=header) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] in {"AUTH_REQUIRED", "TOKEN_INVALID"}


async def test_health_readiness_and_metrics(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(server[0] + "/healthz") as response:
        assert response.status == 200 and await response.json() == {"status": "ok"}
    async with http.get(server[0] + "/readyz") as response:
        body = await response.json()
        assert response.status == 200
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    await Player(server[0], http).signup()
    async with http.get(server[0] + "/metrics") as response:
        text = await response.text()
    assert 'thisthat_rest_requests_total{method="POST",route="/auth/signup",status="201"}' in text
    assert "thisthat_db_pool_in_use" in text


async def test_cors_allows_listed_origins_only(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.options(
        server[0] + "/auth/login", headers={"Origin": "http://localhost:5173"}
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    async with http.post(
        server[0] + "/auth/login", json={}, headers={"Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "FORBIDDEN_ORIGIN"
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_login_brute_force_is_limited_across_two_nodes(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    node_a, _ = await start_server(rate_limit_login_per_username_ip=(3, 60))
    node_b, _ = await start_server(rate_limit_login_per_username_ip=(3, 60))
    victim = await Player(node_a, http).signup(unique_name("victim"))
    statuses = []
    for attempt in range(5):
        node = node_a if attempt % 2 == 0 else node_b
        async with http.post(
            node + "/auth/login", json={"username": victim.username, "password": "guess guess"}
        ) as response:
            statuses.append(response.status)
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert (await response.json())["error"]["code"] == "RATE_LIMITED"
    assert statuses == [401, 401, 401, 429, 429]


async def login_from(
    base: str, address: str, username: str, password: str, forwarded_for: str | None = None
) -> tuple[int, Any]:
    """A login over a connection whose source is `address` (any 127.0.0.0/8 works on loopback)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            base + "/auth/login",
            json={"username": username, "password": password},
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json()


async def test_a_stranger_s_wrong_passwords_do_not_lock_the_owner_out(
    server: Any, http: aiohttp.ClientSession
) -> None:
    owner = await Player(server[0], http).signup(unique_name("owner"))
    stranger = [
        await login_from(server[0], "127.0.0.2", owner.username, "guess guess") for _ in range(12)
    ]
    # Guessing from one address is limited there: the default allows 10 failures per 5 minutes.
    assert [status for status, _ in stranger] == [401] * 10 + [429] * 2
    assert stranger[-1][1]["error"]["code"] == "RATE_LIMITED"
    assert stranger[-1][1]["error"]["retryAfterMs"] > 0
    status, body = await login_from(server[0], "127.0.0.3", owner.username, owner.password)
    assert (status, body["user"]["id"]) == (200, owner.user_id)
    # A success refunds its own attempt: the owner's logins never fill their own budget.
    for _ in range(12):
        status, _ = await login_from(server[0], "127.0.0.3", owner.username, owner.password)
        assert status == 200


async def test_the_username_ceiling_limits_distributed_guessing_but_not_the_owner_s_address(
    start_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    base, _ = await start_server(
        trusted_proxies=("127.0.0.1",),
        rate_limit_login_per_username_ip=(3, 300),
        rate_limit_login_per_username=(6, 3600),
    )
    owner = await Player(base, http).signup(unique_name("owner"))
    home = "198.51.100.1"
    assert (await login_from(base, "127.0.0.1", owner.username, owner.password, home))[0] == 200
    statuses = []
    for guesser in range(1, 9):
        for _ in range(2):
            status, body = await login_from(
                base, "127.0.0.1", owner.username, "guess guess", f"203.0.113.{guesser}"
            )
            statuses.append(status)
            if status == 429:
                assert body["error"]["code"] == "RATE_LIMITED"
    # Two guesses per address never reach the per-address limit; the username's ceiling of 6
    # failures from everywhere stops the rest.
    assert statuses == [401] * 6 + [429] * 10
    assert (await login_from(base, "127.0.0.1", owner.username, owner.password, home))[0] == 200
    # An address the owner never signed in from waits like the guessers.
    status, _ = await login_from(base, "127.0.0.1", owner.username, owner.password, "192.0.2.7")
    assert status == 429


async def test_logins_refused_during_a_database_outage_never_count_as_failures(
    server: Any, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await Player(server[0], http).signup(unique_name("owner"))

    async def unreachable(*args: object) -> None:
        raise ConnectionRefusedError("connection refused")

    # PostgreSQL down, as the connection refused says; the pair limit is 10 failures.
    monkeypatch.setattr(accounts, "get_login", unreachable)
    during = [
        await login_from(server[0], "127.0.0.4", owner.username, owner.password) for _ in range(12)
    ]
    assert {(status, body["error"]["code"]) for status, body in during} == {(503, "NOT_READY")}
    monkeypatch.undo()
    status, body = await login_from(server[0], "127.0.0.4", owner.username, owner.password)
    assert (status, body["user"]["id"]) == (200, owner.user_id)
    # Neither did the outage count against the username, from an address it never signed in from.
    for _ in range(2):
        status, _ = await login_from(server[0], "127.0.0.5", owner.username, "guess guess")
        assert status == 401


async def test_within_the_grace_a_spent_token_from_another_client_is_reuse(
    server: Any, http: aiohttp.ClientSession
) -> None:
    player = await Player(server[0], http).signup()
    first = player.refresh_token
    game = {"User-Agent": "the-game/1.0"}
    status, rotated, _ = await player.post("/auth/refresh", {"refreshToken": first}, headers=game)
    assert status == 200
    status, again, _ = await player.post("/auth/refresh", {"refreshToken": first}, headers=game)
    assert (status, again) == (200, rotated)
    # Well within the window, but not the client that rotated it: the login is revoked.
    thief = {"User-Agent": "curl/8.0"}
    status, body, _ = await player.post("/auth/refresh", {"refreshToken": first}, headers=thief)
    assert (status, body["error"]["code"]) == (401, "REFRESH_TOKEN_REUSED")
    status, body, _ = await player.post(
        "/auth/refresh", {"refreshToken": rotated["refreshToken"]}, headers=game
    )
    assert (status, body["error"]["code"]) == (401, "TOKEN_INVALID")
