"""Whether a load run measured what it was asked to, and if not, what to change.

A run that lost players at the handshake, ran its players out of credits or got refusals it did
not expect measured a different load than the one offered; each such failure becomes one line
naming its cause and the server setting or option that removes it.
"""

from __future__ import annotations

import math
from typing import Any, Final

from loadtest.stats import EXPECTED_REFUSALS

# A bet the mix asked for goes to another operation when the player has no open market; past this
# share of the bets asked for, the run no longer measures betting.
MAX_BETS_WITHOUT_MARKET_SHARE: Final = 0.05
# An open loop sends every request of its schedule, late or not; it falls this far short only
# when a client process has no connected player to send from.
MIN_OFFERED_SHARE: Final = 0.9


def connection_problems(failed: dict[str, int], players: int) -> list[str]:
    """One line per kind of refused or failed connection, with what removes it."""
    lines = []
    total = sum(failed.values())
    connected = players - total
    for kind, count in sorted(failed.items(), key=lambda item: -item[1]):
        share = f"{count:,} of {players:,} players"
        if kind == "handshake:429":
            lines.append(
                f"{share} were refused at the handshake (429 RATE_LIMITED): the server caps new "
                f"connections per client address (RATE_LIMIT_CONNECTIONS_PER_IP, 50/1 by default) "
                f"and let {connected:,} in; {players:,} players from one address need "
                f"RATE_LIMIT_CONNECTIONS_PER_IP={2 * players}/1 or RATE_LIMIT_ENABLED=false"
            )
        elif kind == "connect:RATE_LIMITED":
            lines.append(
                f"{share} were refused at CONNECT (RATE_LIMITED): a player holds more sockets than "
                "SOCKETS_PER_USER (10 by default) allows; list each player once, or raise it"
            )
        elif kind in ("connect:TOKEN_EXPIRED", "connect:TOKEN_INVALID"):
            lines.append(
                f"{share} were refused at CONNECT ({kind.partition(':')[2]}): seed the players "
                "again (`thisthat seed ... --token-ttl 2h`) against this server's JWT secrets"
            )
        elif kind.startswith("handshake:503") or kind == "connect:NOT_READY":
            lines.append(f"{share} were refused: the server is not ready or is draining ({kind})")
        else:
            lines.append(f"{share} could not connect ({kind})")
    return lines


def answer_problems(report: dict[str, Any]) -> list[str]:
    """One line per unexpected error code of the answers, with what removes it."""
    lines = []
    players = max(1, report["connections"]["connected"])
    for code, count in report["errors"].items():
        if code in EXPECTED_REFUSALS:
            continue
        if code == "INSUFFICIENT_CREDITS":
            lines.append(
                f"{count:,} bets were refused with INSUFFICIENT_CREDITS: the players ran out of "
                "credits; seed them with more (`thisthat seed --credits 100000`) or bet less "
                "(--amount, --rate, --duration)"
            )
        elif code == "RATE_LIMITED":
            lines += _rate_limited(report, count, players)
        elif code == "TIMEOUT":
            lines.append(
                f"{count:,} requests got no answer within --timeout ({code}): the server fell "
                "behind the offered load"
            )
        elif code == "LOST":
            lines.append(
                f"{count:,} requests of a load client process that did not finish had no answer "
                f"when it stopped ({code})"
            )
        elif code == "DISCONNECTED":
            lines.append(f"{count:,} requests were lost with their dropped socket ({code})")
        else:
            lines.append(f"{count:,} requests were refused with {code}")
    return lines


def problems(report: dict[str, Any]) -> list[str]:
    """Every reason the run did not measure the load it was asked for; empty when it did."""
    lines = connection_problems(report["connections"]["failed"], report["players"])
    lines += answer_problems(report)
    lines += [unfinished_line(entry) for entry in report.get("unfinishedProcesses", [])]
    if report.get("socketsDropped"):
        lines.append(f"{report['socketsDropped']:,} sockets were dropped during the run")
    if report["mode"] != "idle" and not report["sent"]:
        lines.append("no request was sent in the measured window")
    elif _offered_short(report):
        lines.append(
            f"the run offered {report['offeredRate']}/s of the {report['targetRate']:g}/s asked "
            "for: a client process had no connected player to send from"
        )
    if _bets_without_market(report):
        lines.append(
            f"{report['betsWithoutMarket']:,} of {report['betsAsked']:,} bets found no open market and were sent as wallet:get "
            "(run the server with a feed that keeps markets open, e.g. "
            "FEED=replay:feeds/timelines/loadtest.jsonl FEED_REPLAY_LOOP=true)"
        )
    return lines


def unfinished_line(entry: dict[str, Any]) -> str:
    """A client process that never sent its result, with what it last reported."""
    errors = ", ".join(f"{code}={count:,}" for code, count in entry["errors"].items()) or "none"
    at = f" at {entry['lastReportS']}s" if entry.get("lastReportS") is not None else ""
    return (
        f"load client process {entry['process']} {entry['reason']}; its last report{at}: "
        f"{entry['sockets']:,} sockets open, sent {entry['sent']:,}, answered "
        f"{entry['answered']:,} (ok {entry['ok']:,}), errors {errors}, dropped {entry['dropped']:,}; "
        f"its {entry['lost']:,} unanswered requests count as LOST"
    )


def _rate_limited(report: dict[str, Any], count: int, players: int) -> list[str]:
    kinds = dict(report.get("rateLimited") or {"other": count})
    per_player = _per_player_rates(report, players)
    offered = f" (this run offered about {per_player} per player)" if per_player else ""
    lines = []
    if kinds.get("bets"):
        lines.append(
            f"{kinds['bets']:,} bets were refused with RATE_LIMITED: the server limits each "
            f"player's bets a second (RATE_LIMIT_BETS_PER_USER, 20/1 by default){offered}; "
            "raise it (e.g. RATE_LIMIT_BETS_PER_USER=1000/1) or set RATE_LIMIT_ENABLED=false"
        )
    if kinds.get("events"):
        lines.append(
            f"{kinds['events']:,} requests were refused with RATE_LIMITED: the server limits each "
            f"player's events a second (RATE_LIMIT_EVENTS_PER_USER, 50/1 by default){offered}; "
            "raise it (e.g. RATE_LIMIT_EVENTS_PER_USER=1000/1) or set RATE_LIMIT_ENABLED=false"
        )
    if kinds.get("busy"):
        lines.append(
            f"{kinds['busy']:,} bets were refused with RATE_LIMITED because the server was busy: "
            "bets waited longer than BET_QUEUE_TARGET_MS, the load is above what it places"
        )
    if kinds.get("other"):
        lines.append(f"{kinds['other']:,} requests were refused with RATE_LIMITED")
    return lines


def _per_player_rates(report: dict[str, Any], players: int) -> str:
    if report["mode"] != "open" or not report.get("targetRate"):
        return ""
    mix: dict[str, float] = report["mix"]
    total = sum(mix.values()) or 1.0
    per_player = report["targetRate"] / players
    bets = per_player * mix.get("bet", 0.0) / total
    others = per_player - bets
    return (
        f"{math.ceil(bets * 10) / 10:g} bets/s and {math.ceil(others * 10) / 10:g} other events/s"
    )


def headline(report: dict[str, Any], found: list[str]) -> str:
    """The verdict in one line: what failed, by count, or that the run measured what it offered."""
    if not found:
        return "verdict: ok (every player connected, no unexpected answer)"
    # A process that did not finish comes first: the counts after it miss what it never sent.
    parts = [
        f"load client process {entry['process']} "
        + ("died" if entry["reason"].startswith("died") else "did not finish")
        for entry in report.get("unfinishedProcesses", [])
    ]
    failed = sum(report["connections"]["failed"].values())
    if failed:
        parts.append(f"{failed:,} of {report['players']:,} players not connected")
    unexpected = {
        code: count for code, count in report["errors"].items() if code not in EXPECTED_REFUSALS
    }
    parts += [f"{code}={count:,}" for code, count in unexpected.items()]
    if report.get("socketsDropped"):
        parts.append(f"{report['socketsDropped']:,} sockets dropped")
    if _offered_short(report):
        parts.append(f"offered {report['offeredRate']}/s of {report['targetRate']:g}/s")
    if _bets_without_market(report):
        parts.append(f"{report['betsWithoutMarket']:,} bets without an open market")
    return "verdict: FAILED: " + (", ".join(parts) or found[0])


def _offered_short(report: dict[str, Any]) -> bool:
    return bool(
        report["mode"] == "open"
        and report["sent"]
        and report["offeredRate"] < report["targetRate"] * MIN_OFFERED_SHARE
    )


def _bets_without_market(report: dict[str, Any]) -> bool:
    asked = report.get("betsAsked", 0)
    return bool(
        asked and report.get("betsWithoutMarket", 0) > asked * MAX_BETS_WITHOUT_MARKET_SHARE
    )
