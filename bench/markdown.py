"""bench/results/latest.md: the latest figures next to their targets, with the machine they ran on."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value}{unit}"


def official_section(results: dict[str, Any]) -> str:
    official = results.get("official")
    if not official:
        return "Skipped: Node.js and npm were not found (or npm could not install the client)."
    s = results["summary"]
    rows = []
    for name, label in (
        ("echo", "bare python-socketio ack"),
        ("bet", "bet:place"),
        ("peer", "Node peer: socket.io + pg, one transaction per bet"),
        ("overload", ""),
    ):
        run = official.get(name)
        if run is None:
            continue
        cpu = run["cpuUsPerOp"]
        if name == "overload":
            label = f"bet:place open loop at {_fmt(run['offeredRate'])}/s (3x capacity)"
        rows.append(
            f"| {label} | {_fmt(run['okRate'])} | {_fmt(run['latencyMs']['p99'], ' ms')} | "
            f"{_fmt(cpu.get('server'), ' µs')} | {_fmt(cpu.get('postgres'), ' µs')} | "
            f"{_fmt(cpu.get('redis'), ' µs')} | {_fmt(cpu.get('client'), ' µs')} |"
        )
    table = "\n".join(rows)
    return f"""{official["bet"]["sockets"]} sockets, closed loop unless said; CPU per operation by process.

| run | ok/s | p99 ok | server | PostgreSQL | Redis | client |
|---|---|---|---|---|---|---|
{table}

| figure | measured | target |
|---|---|---|
| server CPU per bet vs per echo ack | {_fmt(s["server_cpu_us_per_bet"], " µs")} vs {_fmt(s["echo_cpu_us_per_ack"], " µs")} (x{_fmt(s["server_cpu_ratio_bet_vs_echo"])}) | <= 1.5x |
| PostgreSQL CPU per bet | {_fmt(s["pg_cpu_us_per_bet"], " µs")} | <= 80 µs |
| bets/s vs the Node peer's | {_fmt(s.get("official_bets_per_s"))} vs {_fmt(s.get("peer_bets_per_s"))} (x{_fmt(s.get("bets_vs_peer"))}) | >= 4x |
| goodput at 3x capacity (ok/s over capacity) | {_fmt(s["overload_goodput_ratio"])} | >= 0.8 |
| ... p99 of accepted / of refusals | {_fmt(s["overload_ok_p99_ms"], " ms")} / {_fmt(s["overload_refusal_p99_ms"], " ms")} | < 500 ms / < 100 ms |
| ... client timeouts | {_fmt(s["overload_timeouts"])} | 0 |"""


def stream_section(results: dict[str, Any]) -> str:
    """Upstream to player (bench/stream.py): the channel's frames to the players' sockets, and the
    closed loop of bets without and with the stream."""
    stream = results.get("stream")
    if not stream:
        return "Not run."
    if "skipped" in stream:
        return f"Skipped: {stream['skipped']}."
    s = results["summary"]
    sizes = stream["sizes"]
    quiet, alone, both = stream["bets"], stream["stream"], stream["both"]
    rows = []
    for label, window in (
        ("channel silent, bets", quiet),
        ("stream, no bets", alone),
        ("stream and bets", both),
    ):
        bets = window.get("bets")
        delay = window.get("delayMs", {})
        rows.append(
            f"| {label} | {_fmt(window.get('framesPerS'))} | {_fmt(window.get('framesCoalesced'))}"
            f" of {_fmt(window.get('framesSent'))} | {_fmt(window.get('deliveriesPerS'))} | "
            f"{_fmt(delay.get('p50Ms'), ' ms')} / {_fmt(delay.get('p99Ms'), ' ms')} | "
            f"{_fmt(bets['okRate'] if bets else None)} | "
            f"{_fmt(bets['latencyMs']['p99'] if bets else None, ' ms')} | "
            f"{_fmt(window['locks']['share'])} |"
        )
    table = "\n".join(rows)
    frame_cpu = alone["cpuUsPerFrameOverIdle"]
    interval = stream["settings"].get("oddsPushMinIntervalMs") or "250 (default)"
    pacing_rule = stream["settings"].get("oddsPushPacing") or "beat"
    cores = results.get("machine", {}).get("cores")
    nodes = sizes.get("players_nodes", 1)
    on_nodes = (
        "a players' node" if nodes == 1 else f"{nodes} players' nodes (the bettors on the first)"
    )
    return f"""{_fmt(s["stream_sockets"])} sockets, each subscribed to 5 of {_fmt(sizes["markets"])} markets, on
{on_nodes} (`FEED=off`); a feed node (`FEED=polymarket`, `FEED_STREAM=true`) on the fake market
channel, which sends `price_change` frames at {_fmt(sizes["frames_per_s"])}/s in all, each moving its market's
best bid. {_fmt(sizes["bettors"])} of the sockets (the official client) bet in a closed loop over their
markets; the others are read at nice {sizes.get("watchers_nice", 0)}, arrivals stamped by the kernel. ODDS_PUSH_MIN_INTERVAL_MS: {interval}; ODDS_PUSH_PACING: {pacing_rule}. Windows of {_fmt(sizes["seconds"])} s.

| window | frames/s | frames coalesced | pushes delivered/s | delay frame sent -> socket p50 / p99 | bets/s | bet p99 | samples with a lock waiter |
|---|---|---|---|---|---|---|---|
{table}

| figure | measured | target |
|---|---|---|
| delay frame sent -> socket, p50 / p99 (stream and bets) | {_fmt(s["stream_delay_p50_ms"], " ms")} / {_fmt(s["stream_delay_p99_ms"], " ms")} | p99 < 100 ms |
| delay frame sent -> socket, p99, stream alone | {_fmt(s["stream_delay_p99_ms_without_bets"], " ms")} | p99 < 100 ms |
| of which until the feed node wrote it (reading the frame, the pacing rule's hold), p99 | {_fmt(s.get("stream_until_written_p99_ms"), " ms")} | - |
| of which from that write to the socket, p50 / p99 (stream and bets; stream alone p99) | {_fmt(s.get("stream_after_written_p50_ms"), " ms")} / {_fmt(s.get("stream_after_written_p99_ms"), " ms")} ({_fmt(s.get("stream_after_written_p99_ms_without_bets"), " ms")}) | - |
| server CPU per upstream frame (feed node + players' node) | {_fmt(s["stream_server_cpu_us_per_frame"], " µs")} ({_fmt(frame_cpu.get("feed"), " µs")} + {_fmt(frame_cpu.get("server"), " µs")}) | - |
| PostgreSQL / Redis CPU per upstream frame | {_fmt(frame_cpu.get("postgres"), " µs")} / {_fmt(frame_cpu.get("redis"), " µs")} | - |
| bets/s without / with the stream | {_fmt(s["bets_per_s_without_stream"])} / {_fmt(s["bets_per_s_with_stream"])} | within noise |
| players' node CPU per bet without / with (with, net of the stream's own rate) | {_fmt(s["server_cpu_us_per_bet_without_stream"], " µs")} / {_fmt(s["server_cpu_us_per_bet_with_stream"], " µs")} ({_fmt(s["server_cpu_us_per_bet_with_stream_net"], " µs")}) | within noise |
| PostgreSQL CPU per bet without / with (net) | {_fmt(s["pg_cpu_us_per_bet_without_stream"], " µs")} / {_fmt(s["pg_cpu_us_per_bet_with_stream"], " µs")} ({_fmt(s["pg_cpu_us_per_bet_with_stream_net"], " µs")}) | within noise |
| bet p99 without / with the stream | {_fmt(s["bet_p99_ms_without_stream"], " ms")} / {_fmt(s["bet_p99_ms_with_stream"], " ms")} | - |
| bets per batch on the players' node without / with the stream | {_fmt(s.get("bet_batch_mean_without_stream"))} / {_fmt(s.get("bet_batch_mean_with_stream"))} | - |
| `market:activity` pushes to the watching sockets per s, without / with the stream | {_fmt(s.get("activity_pushes_per_s_without_stream"))} / {_fmt(s.get("activity_pushes_per_s_with_stream"))} | - |
| `pg_stat_activity` samples with a backend waiting on a lock, without / with | {_fmt(s["lock_wait_share_without_stream"])} / {_fmt(s["lock_wait_share_with_stream"])} | - |
| cores busy (every process measured): bets alone / stream alone / both, of the machine's {_fmt(cores)} | {_fmt(s.get("cores_busy_bets"))} / {_fmt(s.get("cores_busy_stream"))} / {_fmt(s.get("cores_busy_both"))} | - |

CPU per frame is over the idle floor (every socket connected, nothing sent) in the stream-only
window. Frames coalesced are the frames whose value no socket received (a later frame of their
market within ODDS_PUSH_MIN_INTERVAL_MS won); the delay is over every push received (the players'
node is left to go quiet first, so late pushes count), from the send time of the frame whose value
it carries. The two parts split it at the push's `at`, when the feed node's flush wrote the
value: until then (reading the frame, and the hold of ODDS_PUSH_PACING: under `beat` a busy
market's value waits for the next multiple of the interval, under `first-change` only a value no
newer change follows within half an interval waits), and from there to the socket (the write,
the publish, the fan-out, the client's read). When the bets and the stream together keep every
core busy, bets/s falls by the stream's share of the machine
whatever the stream does; CPU per bet is the figure to compare then."""


def market_screen_section(results: dict[str, Any]) -> str:
    """What the market screen costs (bench/market_screen.py): bets with `market:activity` pushes
    and presence off and on, fan-out per recipient, and the odds history's writes."""
    screen = results.get("marketScreen")
    if not screen:
        return "Not run."
    if "skipped" in screen:
        return f"Skipped: {screen['skipped']}."
    s = results["summary"]
    sizes = screen["sizes"]
    rows = []
    for name in ("off", "on"):
        run = screen[name]
        cpu = run["bets"]["cpuUsPerOp"]
        rows.append(
            f"| {name} | {_fmt(run['bets']['okRate'])} | {_fmt(run['bets']['latencyMs']['p99'], ' ms')} | "
            f"{_fmt(cpu.get('server'), ' µs')} | {_fmt(cpu.get('postgres'), ' µs')} | "
            f"{_fmt(cpu.get('redis'), ' µs')} | {_fmt(run['activityPushesPerSAllRecipients'])} | "
            f"{_fmt(run['ticks']['serverCpuUsPerRecipient'], ' µs')} |"
        )
    table = "\n".join(rows)
    history = screen["history"]
    write_rows = []
    for name, label in (
        ("paced", "paced (one write a market a beat)"),
        ("everyChange", "every change"),
    ):
        run = history["runs"][name]
        mode = run["mode"]
        per = run["rowsPerS"]
        latency = run["statementLatency"]
        write_rows.append(
            f"| {label}: {_fmt(mode['statements_per_s'])}/s of {_fmt(mode['batch'])} | "
            f"{_fmt(run['changesPerS'])} | "
            f"{_fmt(per['odds_minutes']['inserted'])} + {_fmt(per['odds_minutes']['updated'])} | "
            f"{_fmt(per['odds_hours']['inserted'])} + {_fmt(per['odds_hours']['updated'])} | "
            f"{_fmt(run['pgCpuUsPerChange'], ' µs')} ({_fmt(run['pgCpuShare'])} CPU) | "
            f"{_fmt(latency.get('p50Ms'), ' ms')} / {_fmt(latency.get('p99Ms'), ' ms')} |"
        )
    writes = "\n".join(write_rows)
    per_day = history["runs"]["everyChange"]["bytesPerMarketPerDay"]
    chart_rows = "\n".join(
        f"| {name} | {chart['interval']} | {_fmt(chart['points'])} | "
        f"{_fmt(chart['latency'].get('p50Ms'), ' ms')} / {_fmt(chart['latency'].get('p99Ms'), ' ms')} |"
        for name, chart in history["charts"].items()
    )
    return f"""{_fmt(screen["on"]["listeners"])} listening sockets and {_fmt(sizes["bettors"])} betting ones (the official
client, closed loop), all subscribed to the same {_fmt(sizes["markets"])} markets of the replay timeline; features
off (MARKET_ACTIVITY_PUSH_INTERVAL_MS=0, PRESENCE_INTERVAL_S past the run: presence has no off switch),
then on (the defaults), one node at a time on the same stack. Windows of {_fmt(sizes["seconds"])} s. Fan-out:
{_fmt(screen["on"]["ticks"]["expected"] // max(1, screen["on"]["listeners"]))} odds ticks to the listeners' room, server CPU over the idle floor per recipient.

| features | bets/s | bet p99 | server / bet | PostgreSQL / bet | Redis / bet | activity pushes delivered/s | fan-out CPU / recipient |
|---|---|---|---|---|---|---|---|
{table}

| figure | measured | target |
|---|---|---|
| server CPU per bet, on / off | {_fmt(s["screen_server_cpu_us_per_bet_on"], " µs")} / {_fmt(s["screen_server_cpu_us_per_bet_off"], " µs")} (x{_fmt(s["screen_server_cpu_per_bet_on_vs_off"])}) | within noise |
| fan-out CPU per recipient, on / off | {_fmt(s["screen_fanout_cpu_us_per_recipient_on"], " µs")} / {_fmt(s["screen_fanout_cpu_us_per_recipient_off"], " µs")} (x{_fmt(s["screen_fanout_on_vs_off"])}) | unchanged |
| activity pushes delivered/s, bets per push | {_fmt(s["screen_activity_pushes_per_s"])}, {_fmt(s["screen_activity_bets_per_push"])} | coalesced per market |
| server CPU the features add per activity push delivered | {_fmt(s["screen_server_cpu_us_per_activity_push"], " µs")} | - |

`record_odds` at {_fmt(history["changesPerS"])} odds changes/s over {_fmt(history["markets"])} markets, no node running
(rows a second as PostgreSQL counts them: inserted + updated):

| written as | changes/s | odds_minutes rows/s | odds_hours rows/s | PostgreSQL CPU / change | statement p50 / p99 |
|---|---|---|---|---|---|
{writes}

Candles a market a day, whatever the rate: {_fmt(per_day["odds_minutes"] / 1000, " kB")} of minutes (kept 30 days), {_fmt(per_day["odds_hours"] / 1000, " kB")}
of hours (kept for the market's life).

`market:history` (services/odds_history.py `chart`) over {_fmt(30)} days of candles of one market:

| chart | interval | points | p50 / p99 |
|---|---|---|---|
{chart_rows}"""


def write_latest(results: dict[str, Any], path: Path, json_name: str) -> None:
    s = results["summary"]
    m = results["machine"]
    memory_rows = "\n".join(
        f"| {_fmt(entry['sockets'])} | {_fmt(entry['rssBeforeKb'] / 1024, ' MiB')} | "
        f"{_fmt(entry['rssKb'] / 1024, ' MiB')} | {_fmt(entry['kbPerSocket'], ' KiB')} |"
        for entry in results["memory"].values()
    )
    peak, opened = results["betsPeak"], results["betsOpen"]
    login_ratio = (
        s["bet_p99_ms_with_logins"] / s["bet_p99_ms_without_logins"]
        if s["bet_p99_ms_with_logins"] and s["bet_p99_ms_without_logins"]
        else None
    )
    text = f"""# Benchmark results ({"quick" if results["quick"] else "full"} run, {results["startedAt"][:10]})

Machine: {m["cpuModel"]}, {m["cores"]} cores, {m["memoryGiB"]} GiB RAM, {m["os"]}, Python {m["python"]}.
Server, PostgreSQL (embedded), Redis (embedded) and the load client (lean websocket client,
{results["betsClosed"]["processes"]} processes) all on this one machine. Raw figures: `{json_name}`.

| figure | measured | target |
|---|---|---|
| echo ceiling (closed loop, acks/s) | {_fmt(s["echo_acks_per_s"])} | - |
| bet:place max (closed loop, bets/s) | {_fmt(s["bets_per_s"])} | - |
| bet_vs_echo | {_fmt(s["bet_vs_echo"])} | >= 0.8 |
| bets at {_fmt(opened["targetRate"])}/s for {_fmt(opened["durationS"])} s: p50 / p99 | {_fmt(s["bet_p50_ms"], " ms")} / {_fmt(s["bet_p99_ms"], " ms")} | p99 < 50 ms |
| ... errors | {_fmt(opened["unexpectedErrors"])} {opened["errors"] or ""} | 0 |
| bets at {_fmt(peak["targetRate"])}/s offered for {_fmt(peak["durationS"])} s: achieved, p95 | {_fmt(s["bet_peak_achieved_per_s"], "/s")}, {_fmt(s["bet_peak_p95_ms"], " ms")} | report (seed peak 5,000/s, p95 < 500 ms) |
| fan-out to {_fmt(s["fanout_sockets"])} sockets: last delivery (worst of {len(results["fanout"]["ticks"])} ticks) | {_fmt(s["fanout_last_ms"], " ms")} | < 300 ms (5,000 sockets) |
| fan-out server CPU per recipient | {_fmt(s["fanout_cpu_us_per_recipient"], " µs")} | <= 20 µs |
| idle sockets: RSS at {_fmt(s["idle_sockets"])} sockets | {_fmt(s["idle_rss_mib"], " MiB")} ({_fmt(s["idle_kb_per_socket"], " KiB")}/socket) | 10,000 within 1 GiB |
| bet p99 without / with logins at 5/s (bcrypt 12) | {_fmt(s["bet_p99_ms_without_logins"], " ms")} / {_fmt(s["bet_p99_ms_with_logins"], " ms")} (x{_fmt(login_ratio)}) | with <= 2x without |
| login p99 (bcrypt 12) during bets | {_fmt(s["login_p99_ms"], " ms")} | - |

## The official client (socket.io-client from npm, permessage-deflate offered)

{official_section(results)}

## Upstream to player: the market channel under bets

{stream_section(results)}

## The market screen: activity pushes, presence and odds history

{market_screen_section(results)}

## Idle memory

| sockets | server RSS before | with sockets | per socket |
|---|---|---|---|
{memory_rows}

Summary line:

    {__import__("orjson").dumps(s).decode()}
"""
    path.write_text(text)
