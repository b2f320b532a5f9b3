"""The application layer: the use cases of the game (bet, settle, claim, rank), between transport and storage."""
