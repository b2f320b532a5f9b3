"""Socket.IO event handlers, one module per part of the game, each with its `register`."""

from server.sockets.events import account, activity, bets, leaderboard, markets, presence
from server.sockets.router import EventRouter


def register_all(router: EventRouter) -> None:
    """Every event of the game and every part of `sync`; the account's `sync` comes first."""
    account.register(router)
    bets.register(router)
    leaderboard.register(router)
    markets.register(router)
    presence.register(router)
    activity.register(router)
