"""The Socket.IO namespace: building the server, the handshake, sessions, event routing and one handler per event."""
