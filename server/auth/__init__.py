"""Credentials: JWT access and refresh tokens, and bcrypt passwords off the event loop."""
