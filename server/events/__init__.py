"""Socket.IO event handlers, one module per part of the game; importing them registers them."""

from server.events import account, bets, leaderboard, markets  # noqa: F401
