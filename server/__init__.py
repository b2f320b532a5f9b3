"""The composition root: app factory, REST auth, the Socket.IO namespace, metrics, health and CLI."""
