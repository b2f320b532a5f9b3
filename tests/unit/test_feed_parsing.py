"""Parsing of recorded Polymarket answers into listings, odds and resolutions."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.parsing import (
    ParseStats,
    midpoint_value,
    parse_gamma_market,
    parse_gamma_markets,
    parse_midpoint_odds,
    resolution_from_clob,
    resolution_from_gamma,
)
from game.markets import Resolution

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "polymarket"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def gamma_with(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = fixture("gamma_market_resolved.json")
    raw.update(changes)
    return {key: value for key, value in raw.items() if value is not None}


def clob_with(
    winners: tuple[bool, bool], prices: tuple[float, float], **changes: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = fixture("clob_market_resolved.json")
    for token, winner, price in zip(raw["tokens"], winners, prices, strict=True):
        token["winner"] = winner
        token["price"] = price
    raw.update(changes)
    return raw


# --- Gamma listings ---------------------------------------------------------------------------


def test_open_gamma_fixture_parses_into_a_listing() -> None:
    listing = parse_gamma_market(fixture("gamma_market_open.json"))

    assert listing is not None
    assert listing.source_id == "0x0f49db97f71c68b1e42a6d16e3de93d85dbf7d4148e3f018eb79e88554be9f75"
    assert listing.question == "Will Gavin Newsom win the 2028 Democratic presidential nomination?"
    assert (listing.this_label, listing.that_label) == ("Yes", "No")
    assert listing.this_token_id.startswith("545330438199465925475")
    assert listing.that_token_id.startswith("878541741480746520604")
    assert (listing.this_odds, listing.that_odds) == (Decimal("0.2325"), Decimal("0.7675"))
    assert listing.ends_at == datetime(2028, 11, 7, tzinfo=UTC)
    assert listing.volume == Decimal("25814545.294374414")
    assert listing.accepting_orders is True
    assert listing.image_url is not None
    assert listing.image_url.startswith("https://")
    assert listing.slug == "will-gavin-newsom-win-the-2028-democratic-presidential-nomination-568"
    assert listing.category is None  # the recorded record names no category


def test_resolved_gamma_fixture_parses_and_is_not_accepting_orders() -> None:
    listing = parse_gamma_market(fixture("gamma_market_resolved.json"))

    assert listing is not None
    assert listing.accepting_orders is False
    assert (listing.this_odds, listing.that_odds) == (Decimal("0.0001"), Decimal("0.9999"))
    assert listing.volume == Decimal(0)  # the record has no volume fields
    assert listing.ends_at == datetime(2028, 1, 1, 5, tzinfo=UTC)


def test_gamma_lists_may_be_real_lists_instead_of_json_strings() -> None:
    raw = fixture("gamma_market_open.json")
    for key in ("outcomes", "outcomePrices", "clobTokenIds"):
        raw[key] = json.loads(raw[key])

    listing = parse_gamma_market(raw)

    assert listing is not None
    assert listing.this_odds == Decimal("0.2325")


def test_odds_are_clamped_and_rounded_to_four_decimals() -> None:
    raw = fixture("gamma_market_open.json")
    raw["outcomePrices"] = '["0.99999", "0.00001"]'
    listing = parse_gamma_market(raw)
    assert listing is not None
    assert (listing.this_odds, listing.that_odds) == (Decimal("0.9999"), Decimal("0.0001"))

    raw["outcomePrices"] = '["0.123456", "0.876544"]'
    listing = parse_gamma_market(raw)
    assert listing is not None
    assert (listing.this_odds, listing.that_odds) == (Decimal("0.1235"), Decimal("0.8765"))


def test_category_comes_from_the_record_then_its_event_then_its_tags() -> None:
    raw = fixture("gamma_market_open.json")
    raw["events"][0]["category"] = "Elections"
    assert (listing := parse_gamma_market(raw)) is not None
    assert listing.category == "Elections"

    raw["category"] = "Politics"
    assert (listing := parse_gamma_market(raw)) is not None
    assert listing.category == "Politics"

    del raw["category"], raw["events"]
    raw["tags"] = [{"id": "2", "label": "US Politics"}]
    assert (listing := parse_gamma_market(raw)) is not None
    assert listing.category == "US Politics"


def test_naive_and_date_only_end_dates_are_read_as_utc() -> None:
    raw = fixture("gamma_market_open.json")
    raw["endDate"] = "2030-01-02T03:04:05"
    assert (listing := parse_gamma_market(raw)) is not None
    assert listing.ends_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    raw["endDate"] = "not a date"
    assert (listing := parse_gamma_market(raw)) is not None
    assert listing.ends_at == datetime(2028, 11, 7, tzinfo=UTC)  # from endDateIso


@pytest.mark.parametrize(
    "changes",
    [
        {"outcomes": '["Yes", "No", "Maybe"]'},
        {"outcomes": '["Yes"]'},
        {"clobTokenIds": '["1", "2", "3"]'},
        {"clobTokenIds": '["1", "1"]'},
        {"outcomePrices": '["0.5"]'},
        {"outcomePrices": '["abc", "0.5"]'},
        {"outcomePrices": '["1.5", "-0.5"]'},
        {"outcomePrices": '["NaN", "0.5"]'},
        {"outcomePrices": "[0.5, 0.5"},
        {"outcomePrices": None},
        {"conditionId": None},
        {"conditionId": ""},
        {"question": 42},
        {"outcomes": '[null, "No"]'},
    ],
)
def test_malformed_or_non_binary_gamma_records_are_skipped(changes: dict[str, Any]) -> None:
    raw = fixture("gamma_market_open.json")
    raw.update(changes)
    raw = {key: value for key, value in raw.items() if value is not None}

    assert parse_gamma_market(raw) is None


def test_a_listing_keeps_the_good_records_and_counts_the_bad() -> None:
    good = fixture("gamma_market_open.json")
    stats = ParseStats()

    listings = parse_gamma_markets([good, {"conditionId": "0x1"}, "junk", None], stats)

    assert [listing.source_id for listing in listings] == [good["conditionId"]]
    assert (stats.parsed, stats.skipped) == (1, 3)


# --- midpoints ------------------------------------------------------------------------------


def test_midpoints_give_both_sides_when_both_are_known() -> None:
    odds = parse_midpoint_odds({"a": Decimal("0.45"), "b": Decimal("0.56")}, "a", "b")
    assert odds == (Decimal("0.45"), Decimal("0.56"))


def test_one_known_midpoint_gives_the_other_side_as_its_complement() -> None:
    assert parse_midpoint_odds({"a": Decimal("0.3")}, "a", "b") == (Decimal("0.3"), Decimal("0.7"))
    assert parse_midpoint_odds({"b": Decimal("0.3")}, "a", "b") == (Decimal("0.7"), Decimal("0.3"))
    assert parse_midpoint_odds({"a": Decimal(1)}, "a", "b") == (
        Decimal("0.9999"),
        Decimal("0.0001"),
    )


def test_no_usable_midpoint_gives_no_odds() -> None:
    assert parse_midpoint_odds({}, "a", "b") is None
    assert parse_midpoint_odds({"a": "x", "b": Decimal(2)}, "a", "b") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.45", Decimal("0.45")),
        (0.45, Decimal("0.45")),
        (1, Decimal(1)),
        ({"mid": "0.5"}, Decimal("0.5")),
        ({"mid_price": 0.25}, Decimal("0.25")),
        ({"price": "0.5"}, None),
        ("", None),
        (True, None),
        ("1.01", None),
        (None, None),
    ],
)
def test_midpoint_values_accept_strings_numbers_and_objects(
    value: object, expected: Decimal | None
) -> None:
    assert midpoint_value(value) == expected


# --- resolutions: CLOB ----------------------------------------------------------------------


def test_clob_open_fixture_is_open_with_its_prices() -> None:
    state = resolution_from_clob(fixture("clob_market_open.json"))

    assert state is not None
    assert (state.closed, state.resolution) == (False, None)
    assert (state.this_odds, state.that_odds) == (Decimal("0.4865"), Decimal("0.5135"))


def test_clob_resolved_fixture_is_won_by_that() -> None:
    state = resolution_from_clob(fixture("clob_market_resolved.json"))

    assert state is not None
    assert state.source_id == "0x8ccc3f4951ff02c1d34b87988752b4444ad17228732780a6cf22afefe8478bb6"
    assert (state.closed, state.resolution) == (True, Resolution.THAT)


def test_clob_markets_page_records_resolve_by_winner_flag_only() -> None:
    states = [resolution_from_clob(raw) for raw in fixture("clob_markets_page.json")["data"]]

    assert [(s.closed, s.resolution) if s else None for s in states] == [
        (True, Resolution.THAT),
        (True, Resolution.THIS),
        # Closed with prices 0/1 but no winner flag: not final until upstream says so.
        (True, None),
    ]


@pytest.mark.parametrize(
    ("winners", "prices", "changes", "expected"),
    [
        ((True, False), (1, 0), {}, Resolution.THIS),
        ((False, True), (0, 1), {}, Resolution.THAT),
        ((False, False), (0.5, 0.5), {"is_50_50_outcome": True}, Resolution.SPLIT),
        ((False, False), (0, 0), {}, Resolution.CANCELLED),
        ((False, False), (0.3, 0.7), {}, None),
        ((True, True), (1, 1), {}, None),
    ],
)
def test_closed_clob_markets_map_to_resolutions(
    winners: tuple[bool, bool],
    prices: tuple[float, float],
    changes: dict[str, Any],
    expected: Resolution | None,
) -> None:
    state = resolution_from_clob(clob_with(winners, prices, **changes))

    assert state is not None
    assert state.closed is True
    assert state.resolution == expected


def test_open_clob_market_is_never_resolved() -> None:
    state = resolution_from_clob(clob_with((True, False), (1, 0), closed=False))

    assert state is not None
    assert (state.closed, state.resolution) == (False, None)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"tokens": []},
        {"condition_id": "0x1", "tokens": [{}, {}, {}]},
        {"condition_id": "0x1"},
    ],
)
def test_malformed_clob_records_give_no_state(raw: object) -> None:
    assert resolution_from_clob(raw) is None


# --- resolutions: Gamma ---------------------------------------------------------------------


def test_gamma_resolved_fixture_is_won_by_that() -> None:
    state = resolution_from_gamma(fixture("gamma_market_resolved.json"))

    assert state is not None
    assert (state.closed, state.resolution) == (True, Resolution.THAT)
    assert (state.this_odds, state.that_odds) == (Decimal("0.0001"), Decimal("0.9999"))


def test_gamma_open_fixture_is_open_with_its_prices_as_fallback_odds() -> None:
    state = resolution_from_gamma(fixture("gamma_market_open.json"))

    assert state is not None
    assert (state.closed, state.resolution) == (False, None)
    assert (state.this_odds, state.that_odds) == (Decimal("0.2325"), Decimal("0.7675"))


@pytest.mark.parametrize(
    ("prices", "status", "expected"),
    [
        ('["1", "0"]', "resolved", Resolution.THIS),
        ('["0", "1"]', "resolved", Resolution.THAT),
        ('["0.5", "0.5"]', "resolved", Resolution.SPLIT),
        ('["0", "0"]', None, Resolution.CANCELLED),
        ('["0", "0"]', "resolved", Resolution.CANCELLED),
        ('["1", "0"]', None, Resolution.THIS),  # old records carry no UMA status
        ('["1", "0"]', "proposed", None),
        ('["0.5", "0.5"]', None, None),
        ('["0.5", "0.5"]', "disputed", None),
        ('["0.97", "0.03"]', "resolved", None),
    ],
)
def test_closed_gamma_markets_map_to_resolutions(
    prices: str, status: str | None, expected: Resolution | None
) -> None:
    state = resolution_from_gamma(gamma_with(outcomePrices=prices, umaResolutionStatus=status))

    assert state is not None
    assert state.closed is True
    assert state.resolution == expected


def test_open_gamma_market_is_never_resolved() -> None:
    state = resolution_from_gamma(gamma_with(closed=False))

    assert state is not None
    assert (state.closed, state.resolution) == (False, None)


def test_closed_gamma_market_without_prices_is_closed_and_waiting() -> None:
    state = resolution_from_gamma(gamma_with(outcomePrices="garbage"))

    assert state is not None
    assert (state.closed, state.resolution, state.this_odds) == (True, None, None)


# --- never raising on arbitrary JSON --------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["0.5", "1", "0", "NaN", "1e999999", "-0", '["Yes", "No"]', '["1", "0"]']),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=6)
    ),
    max_leaves=25,
)

GAMMA_KEYS = [
    "conditionId", "question", "outcomes", "outcomePrices", "clobTokenIds", "endDate", "endDateIso",
    "category", "events", "tags", "image", "icon", "volumeNum", "volume", "acceptingOrders", "slug",
    "closed", "umaResolutionStatus",
]  # fmt: skip
CLOB_KEYS = ["condition_id", "tokens", "closed", "is_50_50_outcome"]

gamma_like = st.fixed_dictionaries({}, optional={key: json_values for key in GAMMA_KEYS})
clob_like = st.fixed_dictionaries(
    {},
    optional={
        **{key: json_values for key in CLOB_KEYS},
        "tokens": st.lists(
            st.fixed_dictionaries(
                {}, optional={"token_id": json_values, "price": json_values, "winner": json_values}
            ),
            max_size=3,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, gamma_like))
def test_parse_gamma_market_never_raises(raw: object) -> None:
    parse_gamma_market(raw)
    resolution_from_gamma(raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, clob_like))
def test_resolution_from_clob_never_raises(raw: object) -> None:
    resolution_from_clob(raw)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values, json_values)
def test_parse_midpoint_odds_never_raises(
    midpoints: object, this_token: object, that_token: object
) -> None:
    result = parse_midpoint_odds(midpoints, this_token, that_token)
    if result is not None:
        assert all(Decimal("0.0001") <= odds <= Decimal("0.9999") for odds in result)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fixture_mutations_never_raise(data: st.DataObject) -> None:
    raw = copy.deepcopy(fixture("gamma_market_open.json"))
    for key in data.draw(st.lists(st.sampled_from(GAMMA_KEYS), max_size=4)):
        raw[key] = data.draw(json_values)
    listing = parse_gamma_market(raw)
    if listing is not None:
        assert listing.this_token_id != listing.that_token_id
