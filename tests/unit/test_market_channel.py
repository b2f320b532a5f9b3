"""Parsing of the Polymarket market channel's frames, on every recorded and documented sample."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.market_channel import (
    BadInput,
    BestBidAsk,
    BookSnapshot,
    ControlText,
    LastTrade,
    MarketResolved,
    NewMarket,
    ParsedFrame,
    Pong,
    PriceChange,
    TickSizeChange,
    parse_market_frame,
)

WS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "polymarket" / "ws"

EVENT_TYPES: dict[str, type] = {
    "book.json": BookSnapshot,
    "price_change.json": PriceChange,
    "last_trade_price.json": LastTrade,
    "tick_size_change.json": TickSizeChange,
    "best_bid_ask.json": BestBidAsk,
    "new_market.json": NewMarket,
    "market_resolved.json": MarketResolved,
}
LEGACY_KINDS = {
    "price_change.json": BadInput.LEGACY_PRICE_CHANGE,
    "tick_size_change.json": BadInput.LEGACY_TICK_SIZE_CHANGE,
}


def ws_fixture(name: str) -> Any:
    return json.loads((WS_FIXTURES / name).read_text())


def documented_frames() -> list[tuple[str, str, Any]]:
    frames = []
    for file in EVENT_TYPES:
        content = ws_fixture(file)
        for found in content["samples"]:
            frames.append((file, found["name"], found["frame"]))
        if "docs_example" in content:
            frames.append((file, "docs_example", content["docs_example"]["frame"]))
    return frames


def legacy_frames() -> list[tuple[str, str, Any]]:
    return [
        (file, found["name"], found["frame"])
        for file in EVENT_TYPES
        for found in ws_fixture(file).get("legacy_samples_do_not_emit", [])
    ]


def sample(file: str, name: str) -> Any:
    (frame,) = [s["frame"] for s in ws_fixture(file)["samples"] if s["name"] == name]
    return frame


def parse(frame: Any) -> ParsedFrame:
    return parse_market_frame(json.dumps(frame))


def only_event(frame: Any) -> Any:
    parsed = parse(frame)
    assert parsed.skipped == ()
    (event,) = parsed.events
    return event


def book_frame(**changes: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "event_type": "book",
        "market": "0xm",
        "asset_id": "token",
        "timestamp": "1781435100123",
        "bids": [{"price": "0.40", "size": "10"}],
        "asks": [{"price": "0.42", "size": "12"}],
    }
    frame.update(changes)
    return frame


def trade_frame(price: Any = "0.5") -> dict[str, Any]:
    return {
        "event_type": "last_trade_price",
        "market": "0xm",
        "asset_id": "token",
        "price": price,
        "timestamp": "1781435100123",
    }


# --- every documented sample ------------------------------------------------------------------


@pytest.mark.parametrize(("file", "name", "frame"), documented_frames())
def test_every_documented_sample_parses_to_its_event_type(file: str, name: str, frame: Any) -> None:
    parsed = parse(frame)

    assert parsed.skipped == ()
    expected_count = len(frame) if isinstance(frame, list) else 1
    assert len(parsed.events) == expected_count
    assert all(type(event) is EVENT_TYPES[file] for event in parsed.events)


@pytest.mark.parametrize(("file", "name", "frame"), legacy_frames())
def test_legacy_samples_are_skipped_as_legacy(file: str, name: str, frame: Any) -> None:
    assert parse(frame) == ParsedFrame((), (LEGACY_KINDS[file],))


def test_the_session_frames_from_the_server_all_parse() -> None:
    steps = ws_fixture("session_newsom_2028.json")["steps"]
    for step in steps:
        if step["dir"] == "server->client":
            text = step["frame"] if step["encoding"] == "text" else json.dumps(step["frame"])
            parsed = parse_market_frame(text)
            assert parsed.skipped == ()
            assert parsed.events


def test_the_captured_bytes_parse_like_the_stored_frame() -> None:
    (captured,) = [
        s for s in ws_fixture("price_change.json")["samples"] if s["name"] == "live_mirrored_pair"
    ]

    assert parse_market_frame(captured["raw"]) == parse(captured["frame"])
    assert parse_market_frame(json.dumps(captured["frame"], indent=4)) == parse(captured["frame"])


# --- event fields -----------------------------------------------------------------------------


def test_a_book_keeps_its_levels_and_tick_size_as_decimals() -> None:
    (yes, no) = parse(sample("book.json", "initial_dump_newsom_2028_both_tokens")).events

    assert isinstance(yes, BookSnapshot)
    assert isinstance(no, BookSnapshot)
    assert yes.asset_id.startswith("5453")
    assert no.asset_id.startswith("8785")
    assert yes.market.startswith("0x0f49db97")
    assert yes.timestamp_ms == 1781435100123
    assert yes.tick_size == Decimal("0.001")
    assert yes.bids[-1] == (Decimal("0.232"), Decimal("4622.38"))
    assert yes.asks[-1] == (Decimal("0.233"), Decimal("3155.91"))


def test_a_book_refresh_without_tick_size_has_none() -> None:
    refresh = only_event(sample("book.json", "book_refresh_after_trade_newsom_yes"))

    assert refresh.tick_size is None


def test_a_price_change_carries_each_token_level_and_its_top() -> None:
    change = only_event(sample("price_change.json", "live_two_tokens_with_level_removal"))

    assert change.timestamp_ms == 1786728438403
    first, second = change.changes
    assert (first.side, first.price, first.size) == ("BUY", Decimal("0.06"), Decimal("374.34"))
    assert (first.best_bid, first.best_ask) == (Decimal("0.07"), Decimal("0.08"))
    assert (second.side, second.price, second.size) == ("SELL", Decimal("0.94"), Decimal("0"))


def test_an_empty_side_sentinel_reads_as_no_best_price() -> None:
    change = only_event(ws_fixture("price_change.json")["docs_example"]["frame"])
    top = only_event({**sample("best_bid_ask.json", "live_top_of_book"), "best_bid": ""})

    assert (change.changes[0].best_bid, change.changes[0].best_ask) == (Decimal("0.5"), None)
    assert (top.best_bid, top.best_ask) == (None, Decimal("0.587"))


def test_a_trade_tick_change_and_top_of_book_read_their_fields() -> None:
    trade = only_event(sample("last_trade_price.json", "newsom_2028_taker_buy"))
    tick = only_event(sample("tick_size_change.json", "widen_back_to_0.01"))
    top = only_event(sample("best_bid_ask.json", "newsom_2028_yes_after_ask_cleared"))

    assert (trade.price, trade.timestamp_ms) == (Decimal("0.233"), 1781435105194)
    assert (tick.new_tick_size, tick.timestamp_ms) == (Decimal("0.01"), 1786611802517)
    assert (top.best_bid, top.best_ask) == (Decimal("0.232"), Decimal("0.234"))


def test_a_new_market_lists_its_tokens_in_outcome_order() -> None:
    market = only_event(sample("new_market.json", "live_btc_5m_with_fees"))

    assert market.condition_id.startswith("0x9691dbea")
    assert market.gamma_id == "5196322"
    assert market.question == "Bitcoin Up or Down - October 2, 10:30PM-10:35PM ET"
    assert market.slug == "btc-updown-5m-1790994600"
    assert market.outcomes == ("Up", "Down")
    assert market.token_ids[0].startswith("2948")
    assert market.active is False
    assert market.timestamp_ms == 1790908720778


def test_new_market_lists_sent_as_json_strings_are_decoded() -> None:
    frame = sample("new_market.json", "docs_example_nvda")
    as_strings = {
        **frame,
        "outcomes": json.dumps(frame["outcomes"]),
        "assets_ids": json.dumps(frame["assets_ids"]),
    }

    assert only_event(as_strings) == only_event(frame)
    assert only_event(frame).active is True


def test_a_resolution_without_question_or_event_still_names_its_winner() -> None:
    resolved = only_event(sample("market_resolved.json", "live_btc_15m_up"))

    assert resolved.winning_asset_id == resolved.token_ids[0]
    assert resolved.winning_outcome == "Up"
    assert resolved.gamma_id == "1219974"


# --- frames -----------------------------------------------------------------------------------


def test_an_array_frame_and_its_objects_give_the_same_events() -> None:
    frames = [book_frame(), trade_frame()]
    one_by_one = [event for frame in frames for event in parse(frame).events]

    assert list(parse(frames).events) == one_by_one


def test_pong_and_the_server_notices_are_control_events() -> None:
    parsed = {
        found["name"]: parse_market_frame(found["frame"])
        for found in ws_fixture("control.json")["samples"]
        if found["encoding"] == "text"
    }

    assert parsed["pong"].events == (Pong(),)
    assert parsed["no_new_assets"].events == (ControlText("NO NEW ASSETS"),)
    assert parsed["invalid_operation"].events == (ControlText("INVALID OPERATION"),)
    assert all(frame.skipped == () for frame in parsed.values())


def test_an_empty_initial_dump_is_no_event_and_no_error() -> None:
    assert parse_market_frame("[]") == ParsedFrame((), ())


def test_malformed_json_and_unknown_text_are_named() -> None:
    assert parse_market_frame('{"event_type": "book"').skipped == (BadInput.MALFORMED_JSON,)
    assert parse_market_frame("[{]").skipped == (BadInput.MALFORMED_JSON,)
    assert parse_market_frame("PING").skipped == (BadInput.UNKNOWN_TEXT,)
    assert parse_market_frame("").skipped == (BadInput.UNKNOWN_TEXT,)
    assert parse_market_frame("42").skipped == (BadInput.NOT_AN_OBJECT,)


def test_an_unknown_or_missing_event_type_is_named() -> None:
    assert parse(book_frame(event_type="order_filled")).skipped == (BadInput.UNKNOWN_EVENT,)
    assert parse({"market": "0xm"}).skipped == (BadInput.UNKNOWN_EVENT,)


def test_prices_outside_zero_to_one_or_not_decimal_are_bad_prices() -> None:
    for price in ["1.01", "-0.2", "abc", "NaN", "Infinity", True, None]:
        parsed = parse(trade_frame(price))
        assert parsed.events == ()
        assert parsed.skipped in ((BadInput.BAD_PRICE,), (BadInput.MISSING_FIELD,))
    assert parse(book_frame(asks=[{"price": "1.5", "size": "1"}])).skipped == (BadInput.BAD_PRICE,)
    assert parse(book_frame(bids=[{"price": "0.4", "size": "-1"}])).skipped == (BadInput.BAD_SIZE,)


def test_a_missing_timestamp_or_token_is_a_missing_field() -> None:
    assert parse(book_frame(timestamp=None)).skipped == (BadInput.MISSING_FIELD,)
    assert parse(book_frame(timestamp="12.5")).skipped == (BadInput.MISSING_FIELD,)
    assert parse(book_frame(asset_id="")).skipped == (BadInput.MISSING_FIELD,)
    assert parse(book_frame(bids="none")).skipped == (BadInput.MISSING_FIELD,)


def test_a_bad_object_inside_an_array_keeps_the_others() -> None:
    parsed = parse([book_frame(), {"event_type": "nope"}, trade_frame("2"), "text", trade_frame()])

    assert [type(event) for event in parsed.events] == [BookSnapshot, LastTrade]
    assert parsed.skipped == (BadInput.UNKNOWN_EVENT, BadInput.BAD_PRICE, BadInput.NOT_AN_OBJECT)


def test_a_bad_level_change_drops_only_itself() -> None:
    frame = sample("price_change.json", "newsom_2028_deep_bid_added")
    entries = frame["price_changes"]
    broken = {**frame, "price_changes": [entries[0], {**entries[1], "price": "7"}]}

    parsed = parse(broken)

    (change,) = parsed.events
    assert isinstance(change, PriceChange)
    assert [level.asset_id for level in change.changes] == [entries[0]["asset_id"]]
    assert parsed.skipped == (BadInput.BAD_PRICE,)


# --- nothing raises ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "market",
        "asset_id",
        "timestamp",
        "bids",
        "asks",
        "tick_size",
        "price",
        "size",
        "side",
        "price_changes",
        "changes",
        "best_bid",
        "best_ask",
        "new_tick_size",
        "id",
        "assets_ids",
        "clob_token_ids",
        "outcomes",
        "condition_id",
        "winning_asset_id",
        "winning_outcome",
        "active",
    ]
)
field_values = (
    json_values
    | st.sampled_from(["0.5", "0", "1", "", "BUY", "SELL", "1781435100123", '["a","b"]'])
    | st.lists(
        st.dictionaries(field_names, json_values | st.sampled_from(["0.5", "BUY", "1"])),
        max_size=3,
    )
)
events_like = st.builds(
    lambda event_type, fields: {**fields, "event_type": event_type},
    st.sampled_from(
        [
            "book",
            "price_change",
            "last_trade_price",
            "tick_size_change",
            "best_bid_ask",
            "new_market",
            "market_resolved",
        ]
    ),
    st.dictionaries(field_names, field_values, max_size=10),
)


def assert_parses_without_error(text: str) -> None:
    parsed = parse_market_frame(text)
    assert BadInput.UNREADABLE not in parsed.skipped


@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    assert_parses_without_error(text)


@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    assert_parses_without_error(json.dumps(value))


@settings(max_examples=300)
@given(st.lists(events_like, max_size=3) | events_like)
def test_event_shaped_json_never_raises(value: Any) -> None:
    assert_parses_without_error(json.dumps(value))
