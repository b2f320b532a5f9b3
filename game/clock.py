"""Time as the wire shows it: ISO-8601 UTC strings ending in `Z`. No clock reading here."""

from __future__ import annotations

from datetime import UTC, datetime


def ensure_utc(dt: datetime) -> datetime:
    """The same moment in UTC; refuses naive datetimes, whose moment is unknown."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: pass an aware UTC datetime")
    return dt.astimezone(UTC)


def iso_z(dt: datetime) -> str:
    """`2026-11-25T08:30:00.123Z`: UTC, millisecond precision (truncated), `Z` suffix."""
    # isoformat truncates to the millisecond too, and ends in "+00:00" for UTC.
    return ensure_utc(dt).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """An aware UTC datetime from ISO-8601 text with `Z` or an offset; naive text is refused."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    return ensure_utc(datetime.fromisoformat(value))
