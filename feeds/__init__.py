"""Polymarket feed: HTTP client, parsing of upstream JSON into game objects, replay source."""
