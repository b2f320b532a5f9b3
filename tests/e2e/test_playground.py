"""The playground at /play, driven in headless Chromium (Debian's `chromium`, through Playwright)
against a real server on the replay feed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from feeds.replay import SAMPLE_TIMELINE
from tests.conftest import ServerFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLANTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
PLANTED_LABEL = '<img src=x onerror="window.__pwned = 3">Yes'


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat before the browser starts
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


async def open_playground(browser: Any, base: str) -> tuple[Any, list[str]]:
    """A fresh page on /play, signed up and connected; also returns the page's script errors."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(base + "/play")
    await page.fill("#username", f"browser_{os.getpid()}_{id(page) % 10000}")
    await page.fill("#password", "correct horse battery")
    await page.click("#signup")
    await page.wait_for_selector('#status[data-state="connected"]', timeout=15000)
    return page, errors


async def wait_for_markets(page: Any) -> None:
    """The replay feed stores its markets just after start: ask again until they are listed."""
    for _ in range(30):
        if await page.locator("#markets tr").count() > 0:
            return
        await page.click("#refresh-markets")
        await page.wait_for_timeout(500)
    raise AssertionError("no market appeared in the playground")


async def test_playground_signs_up_bets_and_sees_balance_and_odds_move(
    start_server: ServerFactory, browser: Any, tmp_path: Path
) -> None:
    base, _ = await start_server(
        feed=f"replay:{SAMPLE_TIMELINE}", feed_replay_speed=1, feed_odds_interval_s=0.5
    )
    page, errors = await open_playground(browser, base)
    await wait_for_markets(page)
    await page.wait_for_selector("#balance:text('1000')")
    await page.click("#subscribe-all")
    await page.wait_for_selector("#markets button.subscribe:text('Unsubscribe')")

    await page.fill("#bet-amount", "25")
    await page.fill("#bet-slippage", "0.5")
    await page.click("#place-bet")
    await page.wait_for_selector("#bet-result:has-text('placed 25')", timeout=15000)
    await page.wait_for_selector("#balance:text('975')", timeout=15000)
    await page.wait_for_selector("#bets li:has-text('open')")
    await page.wait_for_selector('#history li:has-text("bet_stake")')
    # The bet's ack, which carries the new balance, shows in the raw log (the `balance` push
    # goes to the player's other sockets only).
    await page.wait_for_selector('#log li[data-direction="ack"][data-event="bet:place"]')
    # An odds tick from the replay arrives and recolours its row.
    await page.wait_for_selector('#log li[data-direction="in"][data-event="odds"]', timeout=30000)
    await page.wait_for_selector("#markets td.odds.up, #markets td.odds.down", timeout=30000)

    await page.click("#claim-reward")
    await page.wait_for_selector("#balance:text('1075')", timeout=15000)
    await page.wait_for_selector('#log li[data-direction="in"][data-event="balance"]')
    await page.wait_for_selector("#leaderboard-period")

    # The raw box sends any event and logs its ack.
    await page.fill("#raw-event", "wallet:get")
    await page.fill("#raw-payload", '{"unexpected": 1}')
    await page.click("#raw-send")
    # The page itself also asks for the wallet; the raw event's ack is the one refused.
    ack = page.locator(
        '#log li[data-direction="ack"][data-event="wallet:get"]', has_text="VALIDATION_ERROR"
    ).first
    await ack.wait_for(timeout=15000)
    assert '"unexpected"' in (await ack.text_content() or "")

    screenshot = tmp_path / "playground.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if copy_to := os.environ.get("PLAYGROUND_SCREENSHOT"):
        shutil.copyfile(screenshot, copy_to)
    assert errors == []
    await page.close()


def planted_timeline(path: Path) -> Path:
    """One market whose question and label carry HTML that would run if parsed."""
    first = json.loads(SAMPLE_TIMELINE.read_text().splitlines()[0])
    gamma = first["gamma"]
    gamma["question"] = PLANTED
    gamma["outcomes"] = json.dumps([PLANTED_LABEL, "No"])
    source_id = gamma["conditionId"]
    lines = [
        {"at": 0, "type": "market", "gamma": gamma},
        {"at": 0.5, "type": "odds", "sourceId": source_id, "thisOdds": "0.41", "thatOdds": "0.59"},
        {"at": 1.5, "type": "odds", "sourceId": source_id, "thisOdds": "0.45", "thatOdds": "0.55"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


async def test_market_text_holding_html_is_shown_as_text_and_never_runs(
    start_server: ServerFactory, browser: Any, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    timeline = planted_timeline(tmp_path / "planted.jsonl")
    base, _ = await start_server(feed=f"replay:{timeline}", feed_odds_interval_s=0.5)
    page, errors = await open_playground(browser, base)
    await wait_for_markets(page)
    await page.click("#subscribe-all")
    await page.wait_for_selector("#markets button.subscribe:text('Unsubscribe')")
    await page.wait_for_selector('#log li[data-direction="in"][data-event="odds"]', timeout=15000)

    assert await page.locator("#markets td.question").first.text_content() == PLANTED
    assert await page.locator("#markets span.label").first.text_content() == PLANTED_LABEL
    assert await page.locator("#bet-market option").first.text_content() == PLANTED
    # Nothing was parsed into elements, so nothing ran.
    assert await page.locator("#markets img, #markets script, #bet-panel img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    assert errors == []
    async with http.get(base + "/play") as response:
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    await page.close()


async def test_playground_recovers_after_a_drop_and_logs_the_replayed_pushes(
    start_server: ServerFactory, browser: Any
) -> None:
    from server.fanout.pushes import PUSHES
    from server.fanout.rooms import user_room
    from server.sockets.sessions import SESSIONS

    base, app = await start_server()
    page, errors = await open_playground(browser, base)
    user_id = app[SESSIONS].all()[0].user_id
    # The network goes away under the page; a payout is pushed while it is gone.
    await page.evaluate("state.socket.io.engine.close()")
    await page.wait_for_selector('#log li[data-event="disconnect"]')
    app[PUSHES].emit("balance", {"balance": 1234, "reason": "payout"}, user_room(user_id))
    await page.wait_for_selector('#status:has-text("recovered")', timeout=15000)
    await page.wait_for_selector('#log li[data-event="connect: recovered"]')
    await page.wait_for_selector(
        '#log li[data-direction="replay"][data-event="balance"]', timeout=15000
    )
    assert errors == []
    await page.close()


async def test_playground_refreshes_and_reconnects_when_its_token_expires(
    start_server: ServerFactory, browser: Any
) -> None:
    base, _ = await start_server(jwt_access_expires_in=3, token_expiry_warning_s=1)
    page, errors = await open_playground(browser, base)
    # The page ignores the warning here: the token runs out, the server says so and disconnects.
    await page.evaluate("state.socket.off('auth:expiring')")
    await page.wait_for_selector('#log li[data-event="auth:expired"]', timeout=15000)
    await page.wait_for_selector('#log li[data-event="disconnect"]', timeout=15000)
    await page.wait_for_selector('#log li:has-text("POST /auth/refresh 200")', timeout=15000)
    # Connected again with the new token, and the socket was taken back.
    await page.wait_for_selector('#status:has-text("recovered")', timeout=15000)
    assert errors == []
    await page.close()
