"""Socket.IO event handlers, one module per part of the game; importing them registers them."""

from server.events import account, markets  # noqa: F401
