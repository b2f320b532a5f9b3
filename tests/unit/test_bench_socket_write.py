"""The socket-write floor (bench/socket_write.py) writes what it says to every socket and counts
every byte the reader drained, on loopback."""

from __future__ import annotations

from bench import socket_write


def test_every_write_reaches_the_reader_and_the_figures_are_per_write() -> None:
    figures = socket_write.measure(sockets=20, rounds=3, size=100)
    assert figures["writes"] == 60
    assert figures["bytesReceived"] == 20 * 3 * 100
    assert 1 <= figures["reads"] <= 60
    assert figures["senderUsPerWrite"] > 0


def test_main_prints_one_line_with_both_figures(capsys) -> None:  # type: ignore[no-untyped-def]
    assert socket_write.main(["--sockets", "10", "--rounds", "2", "--bytes", "50"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "20 writes of 50 bytes to 10 loopback sockets" in line
    assert "per write" in line and "per read" in line
