"""Order books per token and the odds Polymarket shows from them, on recorded frames."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from hypothesis import given
from hypothesis import strategies as st

from feeds.market_channel import (
    BookSnapshot,
    LastTrade,
    MarketEvent,
    MarketResolved,
    PriceChange,
    TickSizeChange,
    parse_market_frame,
)
from game.markets import Resolution
from game.order_book import (
    BookChange,
    MarketTokens,
    OrderBooks,
    TokenBook,
    complementary_odds,
    displayed_odds,
    displayed_probability,
    resolution_for_winner,
)

WS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "polymarket" / "ws"

NEWSOM_YES = "54533043819946592547517511176940999955633860128497669742211153063842200957669"
NEWSOM_NO = "87854174148074652060467921081181402357467303721471806610111179101805869578687"
NEWSOM = MarketTokens(this_token_id=NEWSOM_YES, that_token_id=NEWSOM_NO)


def ws_fixture(name: str) -> Any:
    return json.loads((WS_FIXTURES / name).read_text())


def sample(file: str, name: str) -> Any:
    found = [s for s in ws_fixture(file)["samples"] if s["name"] == name]
    assert len(found) == 1, name
    return found[0]["frame"]


def events_of(frame: Any) -> tuple[MarketEvent, ...]:
    parsed = parse_market_frame(json.dumps(frame))
    assert parsed.skipped == ()
    return parsed.events


def apply(books: OrderBooks, event: MarketEvent) -> None:
    if isinstance(event, BookSnapshot):
        books.replace_book(
            event.asset_id, event.bids, event.asks, event.timestamp_ms, event.tick_size
        )
    elif isinstance(event, PriceChange):
        for change in event.changes:
            books.change_level(
                change.asset_id, change.side, change.price, change.size, event.timestamp_ms
            )
    elif isinstance(event, LastTrade):
        books.record_trade(event.asset_id, event.price, event.timestamp_ms)
    elif isinstance(event, TickSizeChange):
        books.change_tick_size(event.asset_id, event.new_tick_size, event.timestamp_ms)


def book_of(frame: Any) -> TokenBook:
    (snapshot,) = events_of(frame)
    assert isinstance(snapshot, BookSnapshot)
    book = TokenBook(snapshot.asset_id)
    change = book.replace_book(
        snapshot.bids, snapshot.asks, snapshot.timestamp_ms, snapshot.tick_size
    )
    assert change == BookChange.APPLIED
    return book


def levels(*pairs: tuple[str, str]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(size)) for price, size in pairs]


def newsom_books() -> OrderBooks:
    books = OrderBooks()
    books.follow([NEWSOM_YES, NEWSOM_NO])
    for event in events_of(sample("book.json", "initial_dump_newsom_2028_both_tokens")):
        apply(books, event)
    return books


def one_sided_book(last_trade: str | None = None) -> TokenBook:
    book = TokenBook("token")
    book.replace_book(levels(("0.40", "10")), [], 1000)
    if last_trade is not None:
        book.record_trade(Decimal(last_trade), 1000)
    return book


# --- the displayed probability -----------------------------------------------------------------


def test_newsom_yes_shows_the_midpoint_of_its_best_bid_and_ask() -> None:
    books = newsom_books()
    yes = books.book(NEWSOM_YES)

    assert yes is not None
    assert (yes.best_bid, yes.best_ask) == (Decimal("0.232"), Decimal("0.233"))
    assert yes.displayed_probability == Decimal("0.2325")
    assert NEWSOM.odds(books) == (Decimal("0.2325"), Decimal("0.7675"))


def test_newsom_session_replay_shows_0_233_once_the_0_233_ask_is_taken() -> None:
    session = ws_fixture("session_newsom_2028.json")
    expected = {
        check["after_steps_index"]: Decimal(check["shown"].split()[0])
        for check in session["displayed_probability_yes"]
    }
    books = OrderBooks()
    books.follow([NEWSOM_YES, NEWSOM_NO])
    shown: dict[int, Decimal | None] = {}

    for index, step in enumerate(session["steps"]):
        if step["dir"] == "server->client":
            frame = step["frame"] if step["encoding"] == "text" else json.dumps(step["frame"])
            parsed = parse_market_frame(frame)
            assert parsed.skipped == ()
            for event in parsed.events:
                apply(books, event)
        yes = books.book(NEWSOM_YES)
        assert yes is not None
        shown[index] = yes.displayed_probability

    assert expected == {1: Decimal("0.2325"), 9: Decimal("0.233")}
    for index, probability in expected.items():
        assert shown[index] == probability
    yes = books.book(NEWSOM_YES)
    assert yes is not None
    assert (yes.best_bid, yes.best_ask) == (Decimal("0.232"), Decimal("0.234"))
    assert yes.last_trade_price == Decimal("0.233")
    assert NEWSOM.odds(books) == (Decimal("0.233"), Decimal("0.767"))


def test_best_prices_do_not_depend_on_level_order() -> None:
    live = book_of(sample("book.json", "initial_dump_live_one_asset"))
    docs = book_of(ws_fixture("book.json")["docs_example"]["frame"])
    reordered = TokenBook("token")
    reordered.replace_book(
        levels(("0.50", "15"), ("0.48", "30"), ("0.49", "20")),
        levels(("0.53", "60"), ("0.54", "10"), ("0.52", "25")),
        1,
    )

    assert (live.best_bid, live.best_ask) == (Decimal("0.14"), Decimal("0.15"))
    assert (docs.best_bid, docs.best_ask) == (Decimal("0.50"), Decimal("0.52"))
    assert (reordered.best_bid, reordered.best_ask) == (Decimal("0.50"), Decimal("0.52"))
    assert docs.displayed_probability == reordered.displayed_probability == Decimal("0.51")


def test_a_book_may_have_an_empty_side() -> None:
    book = TokenBook("token")

    assert book.replace_book([], levels(("0.60", "5")), 1) == BookChange.APPLIED
    assert (book.best_bid, book.best_ask) == (None, Decimal("0.60"))


def test_an_empty_side_shows_the_last_trade() -> None:
    assert one_sided_book(last_trade="0.41").displayed_probability == Decimal("0.41")


def test_a_spread_wider_than_ten_cents_shows_the_last_trade() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.30", "10")), levels(("0.41", "10")), 1)
    book.record_trade(Decimal("0.35"), 1)

    assert book.displayed_probability == Decimal("0.35")


def test_a_spread_of_exactly_ten_cents_still_shows_the_midpoint() -> None:
    assert displayed_probability(Decimal("0.30"), Decimal("0.40"), Decimal("0.9")) == Decimal(
        "0.35"
    )


def test_without_a_usable_midpoint_or_a_trade_nothing_is_shown() -> None:
    assert one_sided_book().displayed_probability is None
    assert displayed_probability(Decimal("0.1"), Decimal("0.9"), None) is None
    assert TokenBook("token").displayed_probability is None


def test_a_snapshot_own_last_trade_price_is_not_shown() -> None:
    frame = {
        "event_type": "book",
        "market": "0xm",
        "asset_id": "token",
        "timestamp": "1",
        "bids": [{"price": "0.14", "size": "5"}],
        "asks": [],
        "last_trade_price": "0.850",
    }
    book = book_of(frame)

    assert book.last_trade_price is None
    assert book.displayed_probability is None


def test_shown_odds_are_clamped_to_four_decimals_inside_the_open_range() -> None:
    assert displayed_probability(None, None, Decimal("1")) == Decimal("0.9999")
    assert displayed_probability(None, None, Decimal("0")) == Decimal("0.0001")
    assert displayed_probability(Decimal("0"), Decimal("0.0001"), None) == Decimal("0.0001")
    assert displayed_probability(Decimal("0.2501"), Decimal("0.2504"), None) == Decimal("0.2502")


# --- updates -----------------------------------------------------------------------------------


def test_a_level_of_size_zero_is_deleted_and_the_next_price_becomes_best() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.20", "1"), ("0.21", "1")), levels(("0.23", "1"), ("0.24", "1")), 1)

    assert book.change_level("SELL", Decimal("0.23"), Decimal("0"), 2) == BookChange.APPLIED
    assert book.change_level("BUY", Decimal("0.21"), Decimal("0"), 2) == BookChange.APPLIED
    assert Decimal("0.23") not in book.asks
    assert (book.best_bid, book.best_ask) == (Decimal("0.20"), Decimal("0.24"))


level_changes = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(min_value=0, max_value=20).map(lambda cents: Decimal(cents) / 20),
        st.sampled_from([Decimal(0), Decimal(0), Decimal(1), Decimal("2.5")]),
    ),
    max_size=40,
)


@given(level_changes)
def test_best_prices_always_match_the_levels(
    changes: list[tuple[Literal["BUY", "SELL"], Decimal, Decimal]],
) -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.30", "1"), ("0.35", "1")), levels(("0.40", "1")), 0)

    for side, price, size in changes:
        book.change_level(side, price, size, 1)

        assert book.best_bid == max(book.bids, default=None)
        assert book.best_ask == min(book.asks, default=None)
        assert all(book.bids.values()) and all(book.asks.values())


def test_a_new_level_inside_the_spread_becomes_best() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.20", "1")), levels(("0.24", "1")), 1)

    book.change_level("BUY", Decimal("0.22"), Decimal("3"), 2)
    book.change_level("SELL", Decimal("0.23"), Decimal("4"), 2)

    assert (book.best_bid, book.best_ask) == (Decimal("0.22"), Decimal("0.23"))
    assert book.displayed_probability == Decimal("0.225")


def test_a_snapshot_replaces_the_whole_book() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.20", "1"), ("0.10", "1")), levels(("0.24", "1")), 1)

    book.replace_book(levels(("0.05", "2")), [], 2)

    assert book.bids == {Decimal("0.05"): Decimal("2")}
    assert book.asks == {}
    assert (book.best_bid, book.best_ask) == (Decimal("0.05"), None)


def test_an_update_older_than_the_book_is_ignored_and_an_equal_one_applies() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.20", "1")), levels(("0.24", "1")), 100)

    assert book.change_level("BUY", Decimal("0.22"), Decimal("1"), 99) == BookChange.STALE
    assert book.replace_book([], [], 99) == BookChange.STALE
    assert book.change_level("BUY", Decimal("0.21"), Decimal("1"), 100) == BookChange.APPLIED
    assert book.replace_book(levels(("0.19", "1")), [], 100) == BookChange.APPLIED
    assert book.bids == {Decimal("0.19"): Decimal("1")}


def test_an_older_trade_or_tick_size_is_ignored() -> None:
    book = TokenBook("token")
    book.record_trade(Decimal("0.30"), 200)
    book.change_tick_size(Decimal("0.001"), 200)

    assert book.record_trade(Decimal("0.25"), 199) == BookChange.STALE
    assert book.change_tick_size(Decimal("0.01"), 199) == BookChange.STALE
    assert book.replace_book([], [], 150, tick_size=Decimal("0.01")) == BookChange.APPLIED
    assert (book.last_trade_price, book.tick_size) == (Decimal("0.30"), Decimal("0.001"))


def test_a_trade_is_kept_whatever_the_book_timestamp() -> None:
    books = newsom_books()

    assert books.record_trade(NEWSOM_YES, Decimal("0.233"), 1) == BookChange.APPLIED


def test_an_out_of_range_price_never_enters_a_book() -> None:
    book = TokenBook("token")
    book.replace_book(levels(("0.20", "1")), levels(("0.24", "1")), 1)
    before = (dict(book.bids), dict(book.asks), book.best_bid, book.best_ask)

    assert book.replace_book(levels(("0.20", "1")), levels(("1.5", "1")), 2) == BookChange.INVALID
    assert book.replace_book(levels(("-0.01", "1")), [], 2) == BookChange.INVALID
    assert book.replace_book(levels(("0.2", "-1")), [], 2) == BookChange.INVALID
    assert book.change_level("SELL", Decimal("1.01"), Decimal("1"), 2) == BookChange.INVALID
    assert book.change_level("BUY", Decimal("NaN"), Decimal("1"), 2) == BookChange.INVALID
    assert book.record_trade(Decimal("-0.5"), 2) == BookChange.INVALID
    assert (dict(book.bids), dict(book.asks), book.best_bid, book.best_ask) == before
    assert book.book_ms == 1
    assert book.last_trade_price is None


def test_level_changes_wait_for_a_first_snapshot() -> None:
    book = TokenBook("token")

    assert book.change_level("BUY", Decimal("0.2"), Decimal("1"), 1) == BookChange.AWAITING_SNAPSHOT
    assert book.bids == {}


def test_updates_for_tokens_nobody_follows_are_not_kept() -> None:
    books = OrderBooks()
    books.follow([NEWSOM_YES])

    assert books.replace_book("other", [], [], 1) == BookChange.UNTRACKED
    assert books.record_trade("other", Decimal("0.5"), 1) == BookChange.UNTRACKED
    assert books.book("other") is None
    books.forget([NEWSOM_YES])
    assert books.book(NEWSOM_YES) is None


def test_tick_size_comes_from_snapshots_and_changes() -> None:
    books = OrderBooks()
    token = "350977769852917329387037893294763093471844346281449484439085576212613048126"
    books.follow([token])
    books.replace_book(token, levels(("0.07", "1")), levels(("0.08", "1")), 1, Decimal("0.01"))

    for frame in [s["frame"] for s in ws_fixture("tick_size_change.json")["samples"][1:]]:
        for event in events_of(frame):
            apply(books, event)

    book = books.book(token)
    assert book is not None
    assert book.tick_size == Decimal("0.01")
    assert book.tick_ms == 1786611802517


# --- this and that -----------------------------------------------------------------------------


def test_this_and_that_odds_follow_the_market_token_order() -> None:
    books = newsom_books()
    swapped = MarketTokens(this_token_id=NEWSOM_NO, that_token_id=NEWSOM_YES)

    assert NEWSOM.odds(books) == (Decimal("0.2325"), Decimal("0.7675"))
    assert swapped.odds(books) == (Decimal("0.7675"), Decimal("0.2325"))


def test_a_token_without_a_shown_price_takes_the_complement_of_the_other() -> None:
    known = TokenBook("yes")
    known.replace_book(levels(("0.232", "1")), levels(("0.233", "1")), 1)
    unknown = one_sided_book()

    assert displayed_odds(known, unknown) == (Decimal("0.2325"), Decimal("0.7675"))
    assert displayed_odds(unknown, known) == (Decimal("0.7675"), Decimal("0.2325"))
    assert displayed_odds(None, known) == (Decimal("0.7675"), Decimal("0.2325"))
    assert complementary_odds(Decimal("1"), None) == (Decimal("0.9999"), Decimal("0.0001"))


def test_no_shown_price_on_either_token_gives_no_odds() -> None:
    assert displayed_odds(one_sided_book(), TokenBook("that")) is None
    assert displayed_odds(None, None) is None


def test_each_token_keeps_its_own_shown_price_when_both_are_known() -> None:
    this, that = TokenBook("this"), TokenBook("that")
    this.replace_book(levels(("0.40", "1")), levels(("0.42", "1")), 1)
    that.replace_book(levels(("0.50", "1")), levels(("0.52", "1")), 1)

    assert displayed_odds(this, that) == (Decimal("0.41"), Decimal("0.51"))


# --- resolution --------------------------------------------------------------------------------


def test_the_winning_token_resolves_the_market_to_its_side() -> None:
    resolutions = []
    for frame in [s["frame"] for s in ws_fixture("market_resolved.json")["samples"]]:
        (event,) = events_of(frame)
        assert isinstance(event, MarketResolved)
        this_token, that_token = event.token_ids
        resolutions.append(resolution_for_winner(event.winning_asset_id, this_token, that_token))

    assert resolutions == [Resolution.THIS, Resolution.THIS, Resolution.THAT]


def test_a_winner_that_is_neither_token_resolves_nothing() -> None:
    assert NEWSOM.resolution("someone-else") is None
    assert NEWSOM.resolution(NEWSOM_NO) == Resolution.THAT
    assert NEWSOM.resolution(NEWSOM_YES) == Resolution.THIS
