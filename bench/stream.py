"""Upstream to player: Polymarket's market channel (a local fake) through a feed node to the
players' sockets, while some of those players bet in a closed loop.

    python -m bench.stream [--quick] [--sockets 5000] [--bettors 100] [--markets 200]
                           [--frames-per-s 2000] [--seconds 20]
                           [--pacing first-change|beat] [--watchers-nice 10]

(`python -m bench.run --only stream` is the same run; `make bench` runs it as its last phase.)

The world: the fake REST API (tests/fake_polymarket.py, `--markets` markets) and the fake market
channel (tests/fake_market_channel.py) run in a helper process, so that their CPU and their
sending are neither slowed by nor counted in the bench process (which samples PostgreSQL and reads
the Node client). A feed node (`FEED=polymarket`, `FEED_STREAM=true`) lists the markets and
subscribes to the channel; the players' node (`FEED=off`) carries every socket and every bet, and
gets the odds through Redis as any node that does not hold the feed lease does. The REST polls of
the feed node are set 10 minutes apart, so only the stream moves odds during the run.

Sockets: `--sockets` in all, each subscribed to 5 markets spread evenly over the markets.
`--bettors` of them are the official socket.io-client (bench/node/closed_loop.mjs), betting in a
closed loop over their own 5 markets; the others are the leanest listening
socket (bench/watch_socket.py) in client processes that note the arrival time of every `odds` push:
the kernel's receive timestamp of the read that carried it, so a client's own wait for the CPU
is not counted. Those processes run at `--watchers-nice` (10), so the server's processes come
first for the CPU, as they would with the clients on other machines; they still take their share.

Frames: the channel sends `price_change` frames round-robin over the markets at `--frames-per-s`
in all. Each one moves its market's best bid one step of 0.0002 through a cycle of 499 prices
(the ask stays), so the shown odds (bid + ask) / 2 move by 0.0001 and name the frame that produced
them; a push is matched to the latest frame of its market with that value sent before it arrived.
Frames that no socket ever sees were coalesced by ODDS_PUSH_MIN_INTERVAL_MS (by design).

Windows, in this order, all with every socket connected:
  idle       nothing sent: the CPU floor;
  bets       the closed loop of bets, the channel sending nothing;
  stream     the channel sending, no bets: delay, and CPU per upstream frame;
  both       the channel sending and the closed loop of bets: delay, bets.
PostgreSQL's `pg_stat_activity` is sampled every 15 ms throughout for backends waiting on a lock
(the odds writes lock market rows, the bet batches take them FOR SHARE).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import multiprocessing
import os
import subprocess
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, Final, get_args

import aiohttp
import asyncpg
import orjson
import uvloop

from bench import node_client
from bench.markdown import stream_section
from bench.phase import on_own_stack, run_phase, say
from bench.processes import CpuWindow
from bench.scenarios import wait_quiet
from bench.stack import BenchStack
from bench.watch_socket import arrival_time, open_watchers
from game.pacing import PacingName
from loadtest.stats import encode, merge, new_histogram, record_seconds, summarize
from loadtest.system import raise_open_file_limit
from tests.fake_market_channel import ChannelMarket, FakeMarketChannel, price_change
from tests.fake_polymarket import FakePolymarket

# The best bid walks a cycle of CYCLE prices, STEP apart, below a fixed ask; the resting base
# bid sits BASE_GAP under the ask (a spread of 0.10 still shows the midpoint).
STEP: Final = Decimal("0.0002")
CYCLE: Final = 499
FIRST_GAP: Final = Decimal("0.0998")
BASE_GAP: Final = Decimal("0.1")
ODDS_SCALE: Final = 10_000  # odds are stored with 4 decimals
PER_SOCKET: Final = 5
LOCK_SAMPLE_S: Final = 0.015
SEND_TICK_S: Final = 0.005
# The feed node's REST polls (list, odds, resolutions): out of the way of the measured windows.
REST_POLL_S: Final = "600"

# The players' node's bet batches, from its /metrics: bets in them, and batches.
BET_BATCH_SUM: Final = "thisthat_bet_batch_size_sum"
BET_BATCH_COUNT: Final = "thisthat_bet_batch_size_count"

LOCK_WAITERS: Final = """
SELECT left(query, 120) AS query FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class StreamSizes:
    sockets: int = 5_000
    bettors: int = 100
    markets: int = 200
    frames_per_s: float = 2_000
    seconds: float = 20
    # Nodes carrying the players' sockets (the watchers spread over them, the bettors on the first).
    players_nodes: int = 1
    warmup_s: float = 3
    # ODDS_PUSH_PACING for the feed node; None: the bench's environment or config.toml decides.
    pacing: PacingName | None = None
    # The watching clients' niceness: above 0, the server's processes come first for the CPU,
    # as they would with the clients on other machines (arrivals are the kernel's timestamps, so
    # a client's own wait for the CPU is not counted).
    watchers_nice: int = 10


FULL_SIZES: Final = StreamSizes()
QUICK_SIZES: Final = StreamSizes(sockets=1_000, frames_per_s=500, seconds=8)


# --- the channel's frames -------------------------------------------------------------------


def ask_price(index: int) -> Decimal:
    """Each market's fixed ask, spread over [0.12, 0.91] so every bid of the cycle is a price."""
    return Decimal("0.12") + Decimal(index % 80) / 100


def bid_price(ask: Decimal, step: int) -> Decimal:
    return ask - FIRST_GAP + STEP * (step % CYCLE)


def odds_key(this_odds: Decimal | float) -> int:
    """A shown price as an integer in 1/10,000ths: what identifies a frame within its market."""
    return round(float(this_odds) * ODDS_SCALE)


class FrameSource:
    """One market's frames: each drops the previous best bid and rests the next one, on the Yes
    token and mirrored on No, in one `price_change` built from the fake's own template."""

    def __init__(self, position: int, market: ChannelMarket, ask: Decimal) -> None:
        self.position = position
        self.market = market
        self.ask = ask
        self.step = 0
        added = price_change(
            market, price=str(ask), size="100", side="BUY", best_bid=str(ask), best_ask=str(ask)
        )
        dropped = price_change(
            market, price=str(ask), size="0", side="BUY", best_bid=str(ask), best_ask=str(ask)
        )
        yes_add, no_add = added["price_changes"]
        yes_drop, no_drop = dropped["price_changes"]
        added["price_changes"] = [yes_drop, yes_add, no_drop, no_add]
        self.frame: dict[str, Any] = added
        self.changes = (yes_drop, yes_add, no_drop, no_add)

    def next(self) -> tuple[str, int]:
        """The next frame's text and the key of the odds it shows."""
        previous, bid = bid_price(self.ask, self.step - 1), bid_price(self.ask, self.step)
        self.step += 1
        yes_drop, yes_add, no_drop, no_add = self.changes
        stamp = str(int(time.time() * 1000))
        top = {"best_bid": str(bid), "best_ask": str(self.ask)}
        mirrored = {"best_bid": str(1 - self.ask), "best_ask": str(1 - bid)}
        yes_drop.update(price=str(previous), hash=f"d{stamp}{self.step}", **top)
        yes_add.update(price=str(bid), hash=f"a{stamp}{self.step}", **top)
        no_drop.update(price=str(1 - previous), hash=f"D{stamp}{self.step}", **mirrored)
        no_add.update(price=str(1 - bid), hash=f"A{stamp}{self.step}", **mirrored)
        self.frame["timestamp"] = stamp
        return orjson.dumps(self.frame).decode(), odds_key((bid + self.ask) / 2)


async def send_frames(
    channel: FakeMarketChannel,
    sources: list[FrameSource],
    rate: float,
    records: list[tuple[int, int, float]],
) -> None:
    """Frames round-robin over the markets at `rate` a second in all; each noted as (market
    position, odds key, wall time just before it was written)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while True:
        due = int((loop.time() - started) * rate)
        while sent < due:
            source = sources[sent % len(sources)]
            text, key = source.next()
            at = time.time()
            await channel.send_to_tokens(text, source.market.tokens)
            records.append((source.position, key, at))
            sent += 1
        await asyncio.sleep(SEND_TICK_S)


def run_channel(markets: int, control: Connection) -> None:
    """Helper process: the fake REST API and the fake channel, driven over `control`."""
    uvloop.run(_channel(markets, control))


async def _channel(count: int, control: Connection) -> None:
    rest = FakePolymarket(with_fixture_markets=False)
    listed = rest.add_markets(count)
    channel = FakeMarketChannel()
    sources = []
    for position, market in enumerate(listed):
        ask = ask_price(position)
        added = channel.add_market(
            market.condition_id,
            market.this_token,
            market.that_token,
            bids=[(str(ask - BASE_GAP), "100")],
            asks=[(str(ask), "100")],
        )
        sources.append(FrameSource(position, added, ask))
    wanted = {token for source in sources for token in source.market.tokens}
    loop = asyncio.get_running_loop()
    async with rest.serve(), channel.serve():
        control.send(
            {
                "gamma": rest.gamma_url,
                "clob": rest.clob_url,
                "ws": channel.url,
                "markets": [market.condition_id for market in listed],
            }
        )
        sender: asyncio.Task[None] | None = None
        records: list[tuple[int, int, float]] = []
        while True:
            command, *arguments = await loop.run_in_executor(None, control.recv)
            if command == "tokens":
                subscribed: set[str] = set()
                for connection in channel.open_connections:
                    if connection.subscribed:
                        subscribed |= connection.assets
                control.send(len(subscribed & wanted))
            elif command == "start":
                records = []
                sender = asyncio.create_task(send_frames(channel, sources, arguments[0], records))
                control.send(True)
            elif command == "stop":
                if sender is not None:
                    sender.cancel()
                    await asyncio.gather(sender, return_exceptions=True)
                control.send(records)
            else:
                control.send(True)
                return


# --- the watching sockets -------------------------------------------------------------------


def run_watchers(
    url: str, tokens: list[str], subscriptions: list[list[str]], control: Connection, nice: int
) -> None:
    """Client process: these players' sockets, each subscribed to its markets, noting when
    every `odds` push arrives (the kernel's receive timestamp); matched to the frames when the
    run ends."""
    if nice:
        os.nice(nice)
    raise_open_file_limit()
    uvloop.run(_watch(url, tokens, subscriptions, control))


async def _watch(
    url: str, tokens: list[str], subscriptions: list[list[str]], control: Connection
) -> None:
    arrivals: dict[tuple[str, int], array[float]] = {}
    others: dict[str, array[float]] = {}  # every other push, by event: when it arrived

    # (market, odds) -> arrival times, and beside each the push's `at`: when the feed node wrote
    # the value (the flush that took it), in wall time.
    written: dict[tuple[str, int], array[float]] = {}
    written_at: dict[str, float] = {}  # `at` texts already read (one per flush)

    def on_push(event: str, data: Any) -> None:
        now = arrival_time()
        if event != "odds":
            others.setdefault(event, array("d")).append(now)
            return
        key = (data["marketId"], round(data["thisOdds"] * ODDS_SCALE))
        at = written_at.get(data["at"])
        if at is None:
            if len(written_at) > 10_000:
                written_at.clear()
            at = written_at[data["at"]] = datetime.fromisoformat(data["at"]).timestamp()
        times = arrivals.get(key)
        if times is None:
            arrivals[key] = array("d", (now,))
            written[key] = array("d", (at,))
        else:
            times.append(now)
            written[key].append(at)

    failures: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    plan = list(zip(tokens, subscriptions, strict=True))
    sockets = await open_watchers(url, plan, on_push, failures, stamped=True)
    control.send({"connected": len(sockets), "failed": dict(failures)})
    frames, windows, all_windows = await loop.run_in_executor(None, control.recv)
    dropped = sum(socket.dropped for socket in sockets)
    other_pushes = {
        name: {
            event: sum(1 for at in times if start <= at < end) for event, times in others.items()
        }
        for name, start, end in all_windows
    }
    control.send(
        {**match(arrivals, written, frames, windows), "dropped": dropped, "others": other_pushes}
    )
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)


def match(
    arrivals: dict[tuple[str, int], array[float]],
    written: dict[tuple[str, int], array[float]],
    frames: dict[str, dict[int, list[tuple[float, int]]]],
    windows: list[tuple[str, float, float]],
) -> dict[str, Any]:
    """Each push against the latest frame of its market and value sent before it arrived; its
    delay counted in the window the frame was sent in, whole and in two parts, split at the
    push's `at` (when the feed node's flush wrote the value): held until then (reading the
    frame, and the pacing rule's hold, by design), and from there to the socket (the write,
    the publish, the fan-out)."""
    delays = {name: new_histogram() for name, _, _ in windows}
    until_written = {name: new_histogram() for name, _, _ in windows}
    after_written = {name: new_histogram() for name, _, _ in windows}
    delivered: dict[str, set[int]] = {name: set() for name, _, _ in windows}
    unmatched = 0

    def window_of(sent: float) -> str | None:
        for name, start, end in windows:
            if start <= sent < end:
                return name
        return None

    for (market_id, key), times in arrivals.items():
        sent_list = frames.get(market_id, {}).get(key)
        if not sent_list:
            unmatched += len(times)
            continue
        stamps = [sent for sent, _ in sent_list]
        for arrived, release in zip(times, written[(market_id, key)], strict=True):
            index = bisect.bisect_right(stamps, arrived) - 1
            if index < 0:
                unmatched += 1
                continue
            sent, sequence = sent_list[index]
            name = window_of(sent)
            if name is None:
                continue
            release = min(max(release, sent), arrived)  # the clocks' reading within a tick
            record_seconds(delays[name], arrived - sent)
            record_seconds(until_written[name], release - sent)
            record_seconds(after_written[name], arrived - release)
            delivered[name].add(sequence)
    return {
        "delays": {name: encode(histogram) for name, histogram in delays.items()},
        "untilWritten": {name: encode(histogram) for name, histogram in until_written.items()},
        "afterWritten": {name: encode(histogram) for name, histogram in after_written.items()},
        "delivered": {name: sorted(seqs) for name, seqs in delivered.items()},
        "unmatched": unmatched,
        "pushes": sum(len(times) for times in arrivals.values()),
    }


# --- PostgreSQL lock waits ------------------------------------------------------------------


async def sample_locks(database_url: str, samples: list[tuple[float, list[str]]]) -> None:
    """Every LOCK_SAMPLE_S: the queries of the backends waiting on a lock (until cancelled)."""
    connection = await asyncpg.connect(database_url)
    try:
        while True:
            rows = await connection.fetch(LOCK_WAITERS)
            samples.append((time.time(), [" ".join(row["query"].split())[:80] for row in rows]))
            await asyncio.sleep(LOCK_SAMPLE_S)
    finally:
        await connection.close()


def lock_share(samples: list[tuple[float, list[str]]], start: float, end: float) -> dict[str, Any]:
    inside = [queries for at, queries in samples if start <= at < end]
    waiting = [queries for queries in inside if queries]
    kinds: Counter[str] = Counter(query for queries in waiting for query in queries)
    return {
        "samples": len(inside),
        "withWaiter": len(waiting),
        "share": round(len(waiting) / len(inside), 4) if inside else None,
        "waitingQueries": dict(kinds.most_common(5)),
    }


# --- the run --------------------------------------------------------------------------------


class TimedWindow(CpuWindow):
    """A CPU window that also notes the wall time it opened and closed."""

    started_at: float = 0.0
    stopped_at: float = 0.0

    def start(self) -> None:
        self.started_at = time.time()
        super().start()

    def stop(self) -> None:
        super().stop()
        self.stopped_at = time.time()

    @property
    def wall_s(self) -> float:
        return self.stopped_at - self.started_at


async def bet_batch_totals(url: str) -> tuple[float, float]:
    """The bets placed in batches so far on the node at `url`, and the batches (its /metrics)."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        response.raise_for_status()
        text = await response.text()
    totals = dict.fromkeys((BET_BATCH_SUM, BET_BATCH_COUNT), 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in totals:
            totals[name] = float(value)
    return totals[BET_BATCH_SUM], totals[BET_BATCH_COUNT]


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    batches = after[1] - before[1]
    return round((after[0] - before[0]) / batches, 2) if batches else None


async def recv(control: Connection, timeout_s: float) -> Any:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, control.poll, timeout_s):
        raise RuntimeError(f"no answer from a helper process within {timeout_s}s")
    return control.recv()


async def ask(control: Connection, *command: Any, timeout_s: float = 60) -> Any:
    control.send(command)
    return await recv(control, timeout_s)


def subscriptions_for(market_ids: list[str], sockets: int) -> list[list[str]]:
    """PER_SOCKET markets per socket, consecutive, so every market has the same audience."""
    count = len(market_ids)
    return [
        [market_ids[(index * PER_SOCKET + k) % count] for k in range(PER_SOCKET)]
        for index in range(sockets)
    ]


async def stream_run(
    stack: BenchStack,
    players: list[dict[str, Any]],
    sizes: StreamSizes,
    processes: int,
    *,
    feed_node: subprocess.Popen[bytes] | None = None,
) -> dict[str, Any]:
    """The phase on a started stack with seeded players (at least `sizes.sockets`). A node
    already holding the feed lease (`feed_node`, the replay node of `make bench`) is stopped
    first: the lease is one per deployment, and the feed node here must take it."""
    cache = node_client.ensure_installed()
    if cache is None:
        return {"skipped": "Node.js and npm are needed for the betting sockets"}
    if len(players) < sizes.sockets:
        raise ValueError(f"the stream run needs {sizes.sockets} players, {len(players)} seeded")
    if feed_node is not None:
        say("stream: stopping the replay node (it holds the feed lease)")
        stack.stop_process(feed_node)
    context = multiprocessing.get_context("spawn")
    own_end, helper_end = context.Pipe()
    helper = context.Process(
        target=run_channel, args=(sizes.markets, helper_end), daemon=True, name="bench-channel"
    )
    helper.start()
    watchers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        fakes = await recv(own_end, 60)
        say(f"stream: feed node on the fake channel, {sizes.markets} markets")
        rule = sizes.pacing or stack.settings().odds_push_pacing
        _, feed = await stack.start_server(
            require_markets=False,
            ODDS_PUSH_PACING=rule,
            FEED="polymarket",
            FEED_STREAM="true",
            POLYMARKET_WS_URL=fakes["ws"],
            POLYMARKET_GAMMA_URL=fakes["gamma"],
            POLYMARKET_BASE_URL=fakes["clob"],
            FEED_MAX_MARKETS=str(sizes.markets),
            FEED_MARKETS_INTERVAL_S=REST_POLL_S,
            FEED_ODDS_INTERVAL_S=REST_POLL_S,
            FEED_RESOLUTION_INTERVAL_S=REST_POLL_S,
        )
        tokens_wanted = 2 * sizes.markets
        deadline = time.monotonic() + 120
        while (held := await ask(own_end, "tokens")) < tokens_wanted:
            if time.monotonic() > deadline or feed.poll() is not None:
                raise RuntimeError(f"the feed node's stream holds {held}/{tokens_wanted} tokens")
            await asyncio.sleep(0.5)
        say(f"stream: the feed node's stream holds all {tokens_wanted} tokens")
        connection = await asyncpg.connect(stack.database_url)
        try:
            rows = await connection.fetch(
                "SELECT source_id, id::text AS id FROM markets WHERE source_id = ANY($1::text[])",
                fakes["markets"],
            )
        finally:
            await connection.close()
        by_condition = {row["source_id"]: row["id"] for row in rows}
        market_ids = [by_condition[condition] for condition in fakes["markets"]]
        nodes = [await stack.start_server(FEED="off") for _ in range(sizes.players_nodes)]
        url = nodes[0][0]

        async def nodes_quiet() -> None:
            for _, node in nodes:
                await wait_quiet(node.pid)

        subscriptions = subscriptions_for(market_ids, sizes.sockets)
        watching = sizes.sockets - sizes.bettors
        watcher_players, bettor_players = players[:watching], players[-sizes.bettors :]
        bettor_markets = subscriptions[watching:]
        share = max(1, min(max(processes, len(nodes)), watching))
        say(
            f"stream: connecting {watching} watching sockets over {share} process(es)"
            f" to {len(nodes)} players' node(s)"
        )
        started = time.monotonic()
        for index in range(share):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=run_watchers,
                args=(
                    nodes[index % len(nodes)][0],
                    [player["accessToken"] for player in watcher_players[index::share]],
                    subscriptions[:watching][index::share],
                    child_end,
                    sizes.watchers_nice,
                ),
                daemon=True,
                name=f"bench-watchers-{index}",
            )
            process.start()
            watchers.append((process, parent_end))
        ready = [await recv(end, 600) for _, end in watchers]
        connected = sum(entry["connected"] for entry in ready)
        failed: Counter[str] = Counter()
        for entry in ready:
            failed.update(entry["failed"])
        say(f"stream: {connected} sockets connected in {time.monotonic() - started:.1f}s")

        groups = {
            "server": [node.pid for _, node in nodes],
            "feed": [feed.pid],
            "redis": stack.redis_pids(),
            "channel": [helper.pid] if helper.pid else [],
            "watchers": [process.pid for process, _ in watchers if process.pid],
        }

        def window() -> TimedWindow:
            return TimedWindow(dict(groups), pgdata=stack.pgdata())

        bettor_tokens = [player["accessToken"] for player in bettor_players]
        samples: list[tuple[float, list[str]]] = []
        sampler = asyncio.create_task(sample_locks(stack.database_url, samples))
        try:
            await nodes_quiet()
            idle = window()
            idle.start()
            await asyncio.sleep(3)
            idle.stop()

            say(f"stream: {sizes.bettors} sockets bet, closed loop, channel silent")
            quiet = window()
            batches_before = await bet_batch_totals(url)
            bets_quiet = await node_client.closed_loop(
                cache,
                url,
                bettor_tokens,
                quiet,
                event="bet:place",
                sockets=sizes.bettors,
                duration_s=sizes.seconds,
                warmup_s=sizes.warmup_s,
                markets=bettor_markets,
            )
            batch_quiet = mean_batch(batches_before, await bet_batch_totals(url))
            await nodes_quiet()

            say(f"stream: channel sending {sizes.frames_per_s:g} frames/s, no bets")
            await ask(own_end, "start", sizes.frames_per_s)
            await asyncio.sleep(sizes.warmup_s)
            streaming = window()
            streaming.start()
            await asyncio.sleep(sizes.seconds)
            streaming.stop()
            records: list[tuple[int, int, float]] = await ask(own_end, "stop", timeout_s=120)
            # The betting sockets connect before the stream resumes: a players' node behind on
            # pushes can take longer than the client's connect timeout to accept them.
            await nodes_quiet()

            async def resume() -> None:
                await ask(own_end, "start", sizes.frames_per_s)

            say(
                f"stream: channel sending {sizes.frames_per_s:g} frames/s and {sizes.bettors} sockets bet"
            )
            both = window()
            batches_before = await bet_batch_totals(url)
            bets_streaming = await node_client.closed_loop(
                cache,
                url,
                bettor_tokens,
                both,
                event="bet:place",
                sockets=sizes.bettors,
                duration_s=sizes.seconds,
                warmup_s=sizes.warmup_s,
                markets=bettor_markets,
                on_connected=resume,
            )
            batch_streaming = mean_batch(batches_before, await bet_batch_totals(url))
            records += await ask(own_end, "stop", timeout_s=120)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)

        # Late pushes still count: the players' node works off what it holds before matching.
        await nodes_quiet()
        await asyncio.sleep(1)
        windows = [
            ("stream", streaming.started_at, streaming.stopped_at),
            ("both", both.started_at, both.stopped_at),
        ]
        frames: dict[str, dict[int, list[tuple[float, int]]]] = {}
        for sequence, (position, key, sent) in enumerate(records):
            frames.setdefault(market_ids[position], {}).setdefault(key, []).append((sent, sequence))
        matched = []
        all_windows = [("bets", quiet.started_at, quiet.stopped_at), *windows]
        for _, end in watchers:
            end.send((frames, windows, all_windows))
        for _, end in watchers:
            matched.append(await recv(end, 600))
        return report(
            sizes,
            connected=connected + bets_streaming["sockets"],
            failed=dict(failed),
            records=records,
            windows=windows,
            matched=matched,
            cpu={"idle": idle, "bets": quiet, "stream": streaming, "both": both},
            bets={"bets": bets_quiet, "both": bets_streaming},
            bet_batches={"bets": batch_quiet, "both": batch_streaming},
            samples=samples,
            settings_note={
                "oddsPushMinIntervalMs": stack.env().get("ODDS_PUSH_MIN_INTERVAL_MS"),
                "oddsPushPacing": rule,
            },
        )
    finally:
        for watcher, end in watchers:
            watcher.join(timeout=15)
            if watcher.is_alive():
                watcher.kill()
            end.close()
        if helper.is_alive():
            with contextlib.suppress(Exception):
                await ask(own_end, "quit", timeout_s=10)
            helper.join(timeout=10)
            if helper.is_alive():
                helper.kill()


def rates(window: TimedWindow) -> dict[str, float]:
    seconds = window.seconds()
    return {name: cpu / window.wall_s for name, cpu in seconds.items()}


def report(
    sizes: StreamSizes,
    *,
    connected: int,
    failed: dict[str, int],
    records: list[tuple[int, int, float]],
    windows: list[tuple[str, float, float]],
    matched: list[dict[str, Any]],
    cpu: dict[str, TimedWindow],
    bets: dict[str, dict[str, Any]],
    bet_batches: dict[str, float | None],
    samples: list[tuple[float, list[str]]],
    settings_note: dict[str, Any],
) -> dict[str, Any]:
    idle_rate = rates(cpu["idle"])
    stream_rate = rates(cpu["stream"])
    result: dict[str, Any] = {
        "sizes": dataclasses.asdict(sizes),
        "sockets": connected,
        "connectFailures": failed,
        "settings": settings_note,
        "unmatchedPushes": sum(entry["unmatched"] for entry in matched),
        "pushesReceived": sum(entry["pushes"] for entry in matched),
        "watcherSocketsDropped": sum(entry["dropped"] for entry in matched),
        "idleCpuPerS": {name: round(rate, 4) for name, rate in idle_rate.items()},
    }
    for name, start, end in windows:
        sent = [seq for seq, (_, _, at) in enumerate(records) if start <= at < end]
        delivered: set[int] = set()
        for entry in matched:
            delivered.update(entry["delivered"][name])
        delays = summarize(merge(entry["delays"][name] for entry in matched))
        window = cpu[name]
        seconds = window.seconds()
        frames = len(sent)
        net = {
            group: max(0.0, seconds[group] - idle_rate.get(group, 0.0) * window.wall_s)
            for group in seconds
        }
        result[name] = {
            "seconds": round(window.wall_s, 2),
            "framesSent": frames,
            "framesPerS": round(frames / window.wall_s, 1) if window.wall_s else None,
            # A frame no socket saw the value of was coalesced: a later frame of its market
            # within ODDS_PUSH_MIN_INTERVAL_MS won.
            "framesCoalesced": frames - len(delivered),
            "framesSeenBySockets": len(delivered),
            "deliveries": delays.get("count", 0),
            "deliveriesPerS": round(delays.get("count", 0) / window.wall_s, 1),
            "delayMs": delays,
            "untilWrittenMs": summarize(merge(entry["untilWritten"][name] for entry in matched)),
            "afterWrittenMs": summarize(merge(entry["afterWritten"][name] for entry in matched)),
            "cpuSeconds": seconds,
            "coresBusy": cores_busy(window),
            # Only the stream-only window's CPU is the frames' alone.
            **(
                {
                    "cpuUsPerFrameOverIdle": {
                        group: round(total / frames * 1e6, 1) if frames else None
                        for group, total in net.items()
                    }
                }
                if name == "stream"
                else {}
            ),
            "locks": lock_share(samples, window.started_at, window.stopped_at),
        }
    for name in ("bets", "both"):
        run = bets[name]
        window = cpu[name]
        entry = result.setdefault(name, {})
        entry["bets"] = run
        # Bets per batch on the players' node (the closed loop's warm-up included).
        entry["betBatchMean"] = bet_batches[name]
        # Pushes other than odds the watching sockets got (the bets' market:activity above all):
        # coalesced per market, so their rate does not follow the bet rate down.
        others: Counter[str] = Counter()
        for watched in matched:
            others.update(watched["others"].get(name, {}))
        entry["otherPushesPerS"] = {
            event: round(count / window.wall_s, 1) for event, count in sorted(others.items())
        }
        entry["locks"] = lock_share(samples, window.started_at, window.stopped_at)
        entry["coresBusy"] = cores_busy(window)
        ops = run["ok"] + run["refused"]
        seconds = window.seconds()
        # The stream's own cost (its rate over the idle floor in the stream-only window) taken
        # out, so what remains is what bets cost beside a running stream.
        entry["cpuUsPerBetNetOfStream"] = {
            group: round(
                max(
                    0.0,
                    seconds[group]
                    - max(0.0, stream_rate.get(group, 0.0) - idle_rate.get(group, 0.0))
                    * window.wall_s,
                )
                / ops
                * 1e6,
                1,
            )
            if ops
            else None
            for group in seconds
        }
    return result


def cores_busy(window: CpuWindow) -> float | None:
    """The CPU of every process measured in a window (server nodes, PostgreSQL, Redis, the
    channel, the clients), in cores: how much of the machine the window used."""
    if not window.wall_s:
        return None
    return round(sum(window.seconds().values()) / window.wall_s, 2)


def summary(stream: dict[str, Any]) -> dict[str, Any]:
    """The keys this phase adds to make bench's summary line."""
    if "skipped" in stream:
        return {"stream_skipped": stream["skipped"]}
    both, alone, quiet = stream["both"], stream["stream"], stream["bets"]
    frame_cpu = alone["cpuUsPerFrameOverIdle"]
    server_frame = (
        round(frame_cpu["server"] + frame_cpu["feed"], 1)
        if frame_cpu.get("server") is not None and frame_cpu.get("feed") is not None
        else None
    )
    return {
        "stream_sockets": stream["sockets"],
        "stream_pacing": stream["settings"].get("oddsPushPacing"),
        "stream_delay_p50_ms": both["delayMs"].get("p50Ms"),
        "stream_delay_p99_ms": both["delayMs"].get("p99Ms"),
        "stream_delay_p99_ms_without_bets": alone["delayMs"].get("p99Ms"),
        "stream_until_written_p99_ms": both["untilWrittenMs"].get("p99Ms"),
        "stream_after_written_p50_ms": both["afterWrittenMs"].get("p50Ms"),
        "stream_after_written_p99_ms": both["afterWrittenMs"].get("p99Ms"),
        "stream_after_written_p99_ms_without_bets": alone["afterWrittenMs"].get("p99Ms"),
        "stream_frames_per_s": both["framesPerS"],
        "stream_frames_sent": both["framesSent"],
        "stream_frames_coalesced": both["framesCoalesced"],
        "stream_deliveries_per_s": both["deliveriesPerS"],
        "stream_server_cpu_us_per_frame": server_frame,
        "stream_feed_cpu_us_per_frame": frame_cpu.get("feed"),
        "stream_players_node_cpu_us_per_frame": frame_cpu.get("server"),
        "stream_pg_cpu_us_per_frame": frame_cpu.get("postgres"),
        "stream_redis_cpu_us_per_frame": frame_cpu.get("redis"),
        "bets_per_s_without_stream": quiet["bets"]["okRate"],
        "bets_per_s_with_stream": both["bets"]["okRate"],
        "bet_p99_ms_without_stream": quiet["bets"]["latencyMs"]["p99"],
        "bet_p99_ms_with_stream": both["bets"]["latencyMs"]["p99"],
        "server_cpu_us_per_bet_without_stream": quiet["bets"]["cpuUsPerOp"].get("server"),
        "server_cpu_us_per_bet_with_stream": both["bets"]["cpuUsPerOp"].get("server"),
        "server_cpu_us_per_bet_with_stream_net": both["cpuUsPerBetNetOfStream"].get("server"),
        "pg_cpu_us_per_bet_without_stream": quiet["bets"]["cpuUsPerOp"].get("postgres"),
        "pg_cpu_us_per_bet_with_stream": both["bets"]["cpuUsPerOp"].get("postgres"),
        "pg_cpu_us_per_bet_with_stream_net": both["cpuUsPerBetNetOfStream"].get("postgres"),
        "activity_pushes_per_s_without_stream": quiet.get("otherPushesPerS", {}).get(
            "market:activity"
        ),
        "activity_pushes_per_s_with_stream": both.get("otherPushesPerS", {}).get("market:activity"),
        "bet_batch_mean_without_stream": quiet.get("betBatchMean"),
        "bet_batch_mean_with_stream": both.get("betBatchMean"),
        "lock_wait_share_without_stream": quiet["locks"]["share"],
        "lock_wait_share_with_stream": both["locks"]["share"],
        "cores_busy_bets": quiet.get("coresBusy"),
        "cores_busy_stream": alone.get("coresBusy"),
        "cores_busy_both": both.get("coresBusy"),
    }


# --- on its own -----------------------------------------------------------------------------


async def main_async(sizes: StreamSizes, processes: int) -> dict[str, Any]:
    return await on_own_stack(
        "stream",
        sizes.sockets,
        lambda stack, players: stream_run(stack, players, sizes, processes),
    )


def sizes_from(args: argparse.Namespace) -> StreamSizes:
    base = QUICK_SIZES if args.quick else FULL_SIZES
    chosen = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(StreamSizes)
        if getattr(args, field.name, None) is not None
    }
    return dataclasses.replace(base, **chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sockets", type=int, help="sockets in all (default 5,000; quick 1,000)")
    parser.add_argument("--bettors", type=int, help="of them betting (default 100)")
    parser.add_argument("--markets", type=int, help="markets listed and streamed (default 200)")
    parser.add_argument(
        "--frames-per-s", type=float, help="frames a second in all (default 2,000; quick 500)"
    )
    parser.add_argument("--seconds", type=float, help="each measured window (default 20; quick 8)")
    parser.add_argument(
        "--players-nodes", type=int, help="nodes carrying the players' sockets (default 1)"
    )
    parser.add_argument(
        "--watchers-nice",
        type=int,
        help="niceness of the watching clients' processes (default 10; 0: as the server's)",
    )
    parser.add_argument(
        "--pacing",
        choices=get_args(PacingName),
        help="ODDS_PUSH_PACING of the feed node (default: the environment's, else config.toml's)",
    )


def run(args: argparse.Namespace) -> int:
    return run_phase(
        "stream",
        "stream",
        args.quick,
        main_async(sizes_from(args), args.processes),
        summary,
        stream_section,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.stream", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller run, a few minutes")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="watching client processes"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
