"""The library internals the server relies on (server/transport/seams.py) are still there."""

from __future__ import annotations

import inspect

import socketio

from server.transport import seams


def test_every_library_seam_the_server_relies_on_is_still_offered() -> None:
    problems = seams.library_surface_problems()
    assert not problems, "a pinned library moved a seam:\n" + "\n".join(problems)


def test_a_changed_signature_is_named_by_the_check(monkeypatch) -> None:
    async def renamed(self, eio_sid, packet):  # type: ignore[no-untyped-def]
        return None

    monkeypatch.setattr(socketio.AsyncServer, "_send_packet", renamed)
    problems = seams.library_surface_problems()
    assert any("AsyncServer._send_packet takes" in problem for problem in problems)


def test_a_missing_private_attribute_is_named_by_the_check(monkeypatch) -> None:
    original = socketio.AsyncServer.__init__

    def without_binary_packets(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        del self._binary_packet

    monkeypatch.setattr(socketio.AsyncServer, "__init__", without_binary_packets)
    problems = seams.library_surface_problems()
    assert "socketio.AsyncServer has no attribute '_binary_packet'" in problems


def test_every_overridden_method_of_the_game_servers_is_listed_as_a_seam() -> None:
    import engineio

    from server.transport.recovery import RecoveringServer
    from server.transport.redis_manager import RedisManager
    from server.transport.socketio_server import GameEngineServer, GameSocketServer

    listed = {(owner, name) for owner, name, _ in seams.OVERRIDDEN}
    for game_class, library_class in (
        (GameSocketServer, socketio.AsyncServer),
        (RecoveringServer, socketio.AsyncServer),
        (RedisManager, socketio.AsyncRedisManager),
        (GameEngineServer, engineio.AsyncServer),
    ):
        overridden = {
            name
            for name, member in vars(game_class).items()
            if not name.startswith("__")
            and inspect.isfunction(member)
            and hasattr(library_class, name)
        }
        for name in overridden:
            assert (library_class, name) in listed or any(
                name == seam and issubclass(library_class, owner)
                for owner, seam, _ in seams.OVERRIDDEN
            ), f"{game_class.__name__}.{name} overrides a library internal not listed in seams.py"
