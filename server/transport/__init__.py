"""Engine.IO and Socket.IO on the wire: the websocket loop, the library seams, origins, client addresses and the drain."""
