"""The playground at /play, driven in headless Chromium (Debian's `chromium`, through Playwright)
against a real server on the replay feed."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from feeds.replay import SAMPLE_TIMELINE
from game.markets import Resolution
from server.application.services import SERVICES
from server.fanout.pushes import PUSHES
from server.fanout.rooms import market_room, user_room
from storage import markets
from tests.betting_fixtures import insert_market
from tests.conftest import ServerFactory
from tests.players import Player

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


# Odds of "this" recorded before the page opens, minutes ago: one minute candle each.
HISTORY = (("6", "0.42"), ("4", "0.47"), ("2", "0.44"), ("0", "0.45"))


async def market_with_history(db: asyncpg.Pool, question: str) -> uuid.UUID:
    """An open market followed for ten minutes whose odds moved four times, the last just now."""
    market = await insert_market(db, question=question)
    await db.execute(
        "UPDATE markets SET created_at = created_at - interval '10 minutes' WHERE id = $1", market
    )
    now = datetime.now(UTC)
    for minutes_ago, odds in HISTORY:
        at = now - timedelta(minutes=int(minutes_ago))
        await markets.record_odds(db, [(market, Decimal(odds), 1 - Decimal(odds))], at)
    return market


async def move_odds(app: Any, db: asyncpg.Pool, market: uuid.UUID, odds: str) -> None:
    """The odds change as the feed would change them: written, then pushed to subscribers."""
    at = datetime.now(UTC)
    changed = await markets.record_odds(db, [(market, Decimal(odds), 1 - Decimal(odds))], at)
    await app[SERVICES].markets.odds_changed(changed, at)


async def bet_on(player: Player, market: uuid.UUID, amount: str, side: str = "this") -> None:
    await player.ok(
        "bet:place",
        {"marketId": str(market), "side": side, "amount": amount, "clientBetId": uuid.uuid4().hex},
    )


async def watch(page: Any, market: uuid.UUID) -> None:
    await page.click(f'#markets tr[data-market-id="{market}"] button.watch')
    await page.wait_for_selector(f'#markets tr.selected[data-market-id="{market}"]')


async def fits_the_width(page: Any) -> bool:
    return bool(
        await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


async def test_the_market_screen_charts_the_odds_and_shows_bets_watchers_and_online_live(
    start_server: ServerFactory,
    browser: Any,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    market = await market_with_history(db, "Will the chart move?")
    base, app = await start_server(presence_interval_s=0.2)
    page, errors = await open_playground(browser, base)
    await page.set_viewport_size({"width": 1280, "height": 1100})
    # A name as markup-like as the username rule lets through.
    bettor = await Player(base, http).signup(f"img_src_x_onerror_{uuid.uuid4().hex[:8]}")
    await bettor.connect()
    await bet_on(bettor, market, "12")  # before the page looks: the page of activity shows it
    await page.wait_for_selector("#online:text('2')", timeout=15000)

    await wait_for_markets(page)
    await watch(page, market)
    chart = page.locator("#chart")
    await page.wait_for_selector('#chart[data-points="4"]')
    assert await chart.locator("circle.point").count() == 4
    assert await chart.get_attribute("data-last") == "0.45"
    line_before = await chart.locator("polyline.close").get_attribute("points")
    await page.wait_for_selector("#market-question:text('Will the chart move?')")
    await page.wait_for_selector("#market-watchers:text('1')")
    await page.wait_for_selector("#activity tr td.amount:text('12')")

    # An odds tick moves the chart's last candle (or opens the next one) without a reload.
    await move_odds(app, db, market, "0.52")
    await page.wait_for_selector('#chart[data-last="0.52"]', timeout=15000)
    assert await chart.locator("polyline.close").get_attribute("points") != line_before
    await page.wait_for_selector("#market-odds:has-text('0.52')")

    # A second player watches: the count goes to 2, in the screen and in the market's row.
    await bettor.ok("market:subscribe", {"marketIds": [str(market)]})
    await page.wait_for_selector("#market-watchers:text('2')", timeout=15000)
    await page.wait_for_selector(f'#markets tr[data-market-id="{market}"] td.watchers:text("2")')

    # Their bet arrives in the feed as it is placed, newest first.
    await bet_on(bettor, market, "34")
    await page.wait_for_selector("#activity tr:first-child td.amount:text('34')", timeout=15000)
    rows = page.locator("#activity tr")
    assert await rows.count() == 2
    assert [await rows.nth(i).locator("td.who").text_content() for i in (0, 1)] == [
        bettor.username,
        bettor.username,
    ]
    assert await rows.nth(1).locator("td.amount").text_content() == "12"
    # Names are text whatever they hold: one the username rule would refuse, pushed to the room.
    planted = {"username": PLANTED, "side": "that", "amount": 56, "odds": 0.48}
    planted["at"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    app[PUSHES].emit(
        "market:activity",
        {"marketId": str(market), "bets": [planted], "omitted": 0},
        market_room(market),
    )
    await page.wait_for_selector("#activity tr:first-child td.amount:text('56')", timeout=15000)
    assert await rows.first.locator("td.who").text_content() == PLANTED
    # The feed holds the rows and cells the page made, nothing parsed out of a name.
    tags = await page.evaluate("[...document.querySelectorAll('#activity *')].map(n => n.tagName)")
    assert set(tags) == {"TR", "TD"}
    assert await page.evaluate("window.__pwned") is None

    assert await fits_the_width(page)
    screenshot = tmp_path / "market-screen.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # The second player leaves: the market is back to one watcher, and one player is online.
    await bettor.close()
    await page.wait_for_selector("#market-watchers:text('1')", timeout=15000)
    await page.wait_for_selector("#online:text('1')", timeout=15000)
    assert errors == []
    await page.close()


async def test_the_board_around_me_shows_my_rank_after_a_settlement_and_my_name_can_hide(
    start_server: ServerFactory,
    browser: Any,
    db: asyncpg.Pool,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    market = await market_with_history(db, "Who ranks where?")
    base, app = await start_server(presence_interval_s=0.2)
    page, errors = await open_playground(browser, base)
    await page.set_viewport_size({"width": 1280, "height": 1100})
    me = await page.locator("#me").text_content()
    await page.wait_for_selector("#my-rank:text('not ranked yet')")
    await wait_for_markets(page)
    await watch(page, market)

    # Hidden: my bet shows as "anonymous" in the feed, to me and to anyone who asks.
    await page.check("#anonymous")
    await page.wait_for_selector("#account-result:has-text('anonymous')")
    await page.fill("#bet-amount", "30")
    await page.fill("#bet-slippage", "0.5")
    await page.click("#place-bet")
    await page.wait_for_selector("#bet-result:has-text('placed 30')", timeout=15000)
    await page.wait_for_selector("#activity tr td.who:text('anonymous')", timeout=15000)
    viewer = await Player(base, http).signup()
    await viewer.connect()
    feed = await viewer.ok("market:activity", {"marketId": str(market)})
    assert [bet["username"] for bet in feed["bets"]] == ["anonymous"]
    await page.uncheck("#anonymous")
    await page.wait_for_selector("#account-result:has-text('your name shows in')")
    feed = await viewer.ok("market:activity", {"marketId": str(market)})
    assert [bet["username"] for bet in feed["bets"]] == [me]

    # Three more players bet; "this" wins: one ranks above me, two below.
    others = {}
    for name, amount, side in (("leader", "100", "this"), ("trailer", "10", "this")) + (
        ("loser", "50", "that"),
    ):
        player = await Player(base, http).signup(f"{name}_{uuid.uuid4().hex[:8]}")
        await player.connect()
        await bet_on(player, market, amount, side)
        others[name] = player
    await page.wait_for_selector("#activity tr:nth-child(4)", timeout=15000)
    await app[SERVICES].settlement.resolve(market, Resolution.THIS)

    # The leaderboard push brings the board around me up to date, my row marked.
    await page.wait_for_selector("#my-rank:has-text('#2 of 4')", timeout=15000)
    mine = page.locator("#board-around-me li.me")
    await mine.wait_for()
    assert await mine.count() == 1
    assert await mine.get_attribute("value") == "2"
    assert (await mine.text_content() or "").startswith(f"{me} ")
    names = await page.locator("#board-around-me li").all_text_contents()
    assert [name.split(" ")[0] for name in names] == [
        others["leader"].username,
        me,
        others["trailer"].username,
        others["loser"].username,
    ]

    assert await fits_the_width(page)
    screenshot = tmp_path / "board-around-me.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    for player in (viewer, *others.values()):
        await player.close()
    assert errors == []
    await page.close()
