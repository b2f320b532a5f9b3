"""The admin page in headless Chromium: the feed as a table, nothing wider than a 1280-px
window, and a refused token leaves no stale data on screen."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ServerFactory
from tests.e2e.test_playground import browser  # noqa: F401 - the Chromium fixture
from tests.players import Player

ADMIN_TOKEN = "admin-token-for-the-page-test-0123456789"


async def test_admin_page_fits_the_window_shows_the_feed_as_a_table_and_clears_on_refusal(
    start_server: ServerFactory,
    http: aiohttp.ClientSession,
    browser: Any,  # noqa: F811 - the fixture imported above
) -> None:
    base, _ = await start_server(
        admin_token=ADMIN_TOKEN, feed="replay:feeds/timelines/sample.jsonl"
    )
    player = await Player(base, http).signup()
    await player.connect()  # a socket with a long id and rooms, for the tables
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(base + "/admin")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#show")
    await page.wait_for_selector('#status:text("live")', timeout=15000)
    await page.wait_for_selector("#feed-jobs tr td:text('replay')", timeout=15000)
    assert "mode replay" in (await page.text_content("#feed-summary") or "")
    assert await page.locator("#sockets tr").count() == 1
    overflow = await page.evaluate(
        "document.scrollingElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, overflow

    await page.fill("#token", "not-the-admin-token-at-all-0123456789")
    await page.click("#show")
    await page.wait_for_selector('#status:text("refused")', timeout=15000)
    assert await page.locator("#sockets tr, #nodes tr, #feed-jobs tr").count() == 0
    assert await page.text_content("#node") == "-"
    assert errors == []
    await page.close()
    await player.close()
