"""The floor under a fan-out: the sender's CPU for one bare socket write on this machine.

    python -m bench.socket_write [--sockets 1000] [--rounds 20] [--bytes 600]

A reader process accepts `--sockets` loopback TCP connections and drains them; this process
writes `--bytes` to each in turn (TCP_NODELAY, as the server's transport sets it), `--rounds`
times, pausing between rounds so every write finds an empty buffer, as a beat's fan-out does.
It prints the sender's CPU per write and the reader's CPU per read. A push beat writes about 600
bytes to each watching socket (5 odds pushes), so the players' node's CPU per socket write in
`bench.stream` can be read against this figure. On loopback the sender's write also runs the
receiver's TCP receive path, so a write to a remote client costs the sender less.
"""

from __future__ import annotations

import argparse
import multiprocessing
import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Final

PAUSE_S: Final = 0.05
READ_TIMEOUT_S: Final = 60.0


def drain(sockets: int, expected: int, report: Connection) -> None:
    """Listen on a loopback port (sent back first), accept `sockets` connections and read until
    `expected` bytes came; report the CPU it took and the reads."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(sockets)
    report.send(listener.getsockname())
    selector = selectors.DefaultSelector()
    for _ in range(sockets):
        connection, _ = listener.accept()
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    started = time.process_time()
    received = reads = 0
    deadline = time.monotonic() + READ_TIMEOUT_S
    while received < expected and time.monotonic() < deadline:
        for key, _ in selector.select(1.0):
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            received += len(data)
            reads += 1
    report.send((time.process_time() - started, reads, received))


def measure(sockets: int, rounds: int, size: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    reader = context.Process(target=drain, args=(sockets, sockets * rounds * size, theirs))
    reader.start()
    connections = []
    try:
        if not ours.poll(READ_TIMEOUT_S):
            raise RuntimeError("the reader did not start listening")
        address = ours.recv()
        for _ in range(sockets):
            connection = socket.create_connection(address)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.append(connection)
        payload = b"x" * size
        time.sleep(PAUSE_S * 10)
        cpu = 0.0
        for _ in range(rounds):
            started = time.process_time()
            for connection in connections:
                connection.send(payload)
            cpu += time.process_time() - started
            time.sleep(PAUSE_S)
        if not ours.poll(READ_TIMEOUT_S):
            raise RuntimeError("the reader did not finish")
        reader_cpu, reads, received = ours.recv()
    finally:
        for connection in connections:
            connection.close()
        reader.join(READ_TIMEOUT_S)
        if reader.is_alive():
            reader.kill()
    writes = sockets * rounds
    return {
        "writes": writes,
        "senderUsPerWrite": cpu / writes * 1e6,
        "reads": reads,
        "readerUsPerRead": reader_cpu / max(reads, 1) * 1e6,
        "bytesReceived": received,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.socket_write", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--bytes", type=int, default=600)
    args = parser.parse_args(argv)
    figures = measure(args.sockets, args.rounds, args.bytes)
    print(
        f"{figures['writes']:,} writes of {args.bytes} bytes to {args.sockets:,} loopback sockets:"
        f" sender {figures['senderUsPerWrite']:.1f} µs CPU per write;"
        f" reader {figures['readerUsPerRead']:.1f} µs CPU per read ({figures['reads']:,} reads)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
