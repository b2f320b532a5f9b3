"""Markets as the game sees them: two sides, odds per side, a status and a resolution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    THIS = "this"  # Polymarket outcome 0
    THAT = "that"  # Polymarket outcome 1


class MarketStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # no bets; waiting for the final resolution upstream
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class Resolution(StrEnum):
    """How a market ended, as the settlement sees it."""

    THIS = "this"
    THAT = "that"
    SPLIT = "split"  # Polymarket 50-50: every share is worth half
    CANCELLED = "cancelled"  # void upstream, or gone: every stake is refunded


@dataclass(frozen=True, slots=True)
class MarketListing:
    """One binary market as read from upstream, before it is stored."""

    source_id: str  # Polymarket condition id
    question: str
    this_label: str
    that_label: str
    this_token_id: str
    that_token_id: str
    this_odds: Decimal
    that_odds: Decimal
    ends_at: datetime | None
    category: str | None
    image_url: str | None
    volume: Decimal
    accepting_orders: bool
    slug: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamState:
    """What upstream says about a market's end: still open, closed and waiting, or final."""

    source_id: str
    closed: bool
    resolution: Resolution | None  # None while open or closed-but-unresolved
    this_odds: Decimal | None = None
    that_odds: Decimal | None = None
