"""Pushes to players: rooms, the batched cross-node publisher, announcements of the use cases, and the market cache."""
