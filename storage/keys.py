"""Every Redis key of the server, in one place."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "tt:"

SOCKETIO_CHANNEL: Final = PREFIX + "socketio"
FEED_LOCK: Final = PREFIX + "feed:lock"
FEED_STATUS: Final = PREFIX + "feed:status"
# node id -> JSON heartbeat of that node (sockets, rooms), read by the admin view.
NODES: Final = PREFIX + "nodes"


def rate_limit(scope: str, subject: str) -> str:
    return f"{PREFIX}rl:{scope}:{subject}"


# `tt:lb:*` holds only the boards (sorted sets); their companions live under other prefixes so a
# scan of the boards finds nothing else.
LEADERBOARD_USERNAMES: Final = PREFIX + "lb-usernames"  # user id -> username, for every board
# The run id of the Redis server the boards were last rebuilt on: absent or different, Redis lost
# (or restarted with older) data, and the boards are rebuilt before the next write.
LEADERBOARDS_BUILT: Final = PREFIX + "lb-built"
LEADERBOARDS_REBUILDING: Final = PREFIX + "lb-rebuilding"  # one node rebuilds at a time


def leaderboard(period_key: str) -> str:
    """A sorted set of user id -> realized PnL for one period bucket ("all", "2026-11-25", "2026-W48")."""
    return f"{PREFIX}lb:{period_key}"


def leaderboard_versions(period_key: str) -> str:
    """user id -> count of settled bets behind that user's score on the board (newer wins)."""
    return f"{PREFIX}lb-versions:{period_key}"


def leaderboard_throttle(period: str) -> str:
    return f"{PREFIX}lb-throttle:{period}"


# The last `thisthat audit`: {"at": unix seconds, "violations": n}, exported by every node's /metrics.
AUDIT_RESULT: Final = PREFIX + "audit:last"

# Connection state recovery (storage/recovery.py): one sequence orders every push of every node;
# a session per private session id; what a room's sockets were sent, kept for the window.
PUSH_SEQUENCE: Final = PREFIX + "push-seq"


def recovery_session(pid: str) -> str:
    return f"{PREFIX}rec:session:{pid}"


def recovery_personal(room: str) -> str:
    """A user's (or one socket's) pushes, in full, scored by their offset."""
    return f"{PREFIX}rec:personal:{room}"


def recovery_trimmed(room: str) -> str:
    """The newest offset trimmed from a personal history: older offsets cannot be recovered."""
    return f"{PREFIX}rec:trimmed:{room}"


def recovery_wanted(room: str) -> str:
    """Set while a recoverable session listens on this personal room: its pushes are kept."""
    return f"{PREFIX}rec:wanted:{room}"


def recovery_state(room: str) -> str:
    """The latest push of each kind to a shared room (a market's odds, a board), by event."""
    return f"{PREFIX}rec:state:{room}"


def socket_slots(user_id: str) -> str:
    """The sockets a user holds on every node (storage/socket_slots.py)."""
    return f"{PREFIX}sockets:{user_id}"


# Presence (storage/presence.py): the nodes writing it; per node, a set of the users watching each
# market and one of the users connected; per market (and for everyone online), the last count.
PRESENCE_NODES: Final = PREFIX + "presence:nodes"
PRESENCE_ONLINE_COUNT: Final = PREFIX + "presence:online-count"


def presence_watching(market_id: str, node: str) -> str:
    """The users with a socket on `node` subscribed to the market."""
    return f"{PREFIX}presence:watching:{market_id}:{node}"


def presence_online(node: str) -> str:
    """The users with a socket on `node`."""
    return f"{PREFIX}presence:online:{node}"


def presence_watchers(market_id: str) -> str:
    """The market's last count of watchers, when it was counted, and the last one pushed."""
    return f"{PREFIX}presence:watchers:{market_id}"
