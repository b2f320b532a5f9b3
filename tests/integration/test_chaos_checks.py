"""The chaos run's own checks find what they name: a journal and a database that disagree."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from chaos import checks
from chaos.players import Attempt, BetIntent, Journal
from tests.betting_fixtures import bet, insert_market, make_user


async def test_each_check_fires_on_the_disagreement_it_names(
    db: asyncpg.Pool, migrated: str
) -> None:
    market_id = await insert_market(db, this_odds="0.5000", that_odds="0.5000")
    user_id = await make_user(db, "chaos_checked", credits="1000")
    user = str(user_id)
    good = await bet(db, user_id, market_id, amount="20", client_bet_id="good")
    refused_but_stored = await bet(db, user_id, market_id, amount="30", client_bet_id="refused")
    await bet(db, user_id, market_id, amount="40", client_bet_id="nobody-sent")

    def intent(client_bet_id: str, amount: str, *attempts: Attempt) -> BetIntent:
        return BetIntent(
            user, client_bet_id, str(market_id), "this", Decimal(amount), {}, list(attempts)
        )

    journal = Journal(users={user: "chaos_checked"})
    # A balance told with the version of the ledger row that left it, and one told wrong.
    journal.balances = [
        (user, good.balance, good.balance_version),
        (user, good.balance + 1, good.balance_version),
    ]
    journal.logins.update({200: 3, 503: 1, 429: 1})
    for item in (
        intent("good", "20", Attempt("ok", "n", bet={"id": str(good.bet.id), "amount": 20})),
        intent("lost", "25", Attempt("ok", "n", bet={"id": "0-0", "amount": 25})),
        intent("refused", "30", Attempt("refused", "n", code="ODDS_CHANGED")),
        intent(
            "repeated",
            "20",
            Attempt("ok", "n", bet={"id": str(good.bet.id), "amount": 20}),
            Attempt("ok", "n", bet={"id": str(refused_but_stored.bet.id), "amount": 20}),
        ),
        intent("never", "10", Attempt("unanswered", "n")),
    ):
        journal.intents[(user, item.client_bet_id)] = item

    findings = await checks.run_checks(migrated, journal, {}, Decimal("1000"))
    assert findings.counts == {
        checks.ACKED_MISSING: 2,  # "lost", and "repeated" (never stored under that clientBetId)
        checks.ACKED_TWICE: 1,
        checks.REFUSED_STORED: 1,
        checks.UNSENT_STORED: 1,
        checks.VERSION_WRONG: 1,
        checks.LOGIN_REFUSED: 1,
    }
    assert findings.facts["unanswered bets not stored"] == "1"

    # Money created from nothing and a market resolved upstream but never settled here.
    await db.execute("UPDATE users SET balance = balance + 5 WHERE id = $1", user_id)
    source_id = await db.fetchval("SELECT source_id FROM markets WHERE id = $1", market_id)
    findings = await checks.run_checks(migrated, Journal(), {source_id: "this"}, Decimal("1000"))
    assert findings.counts[checks.BALANCE_VS_LEDGER] == 1
    assert findings.counts[checks.BALANCE_VS_BETS] == 1
    assert findings.counts[checks.LEDGER_VS_TABLES] == 1  # the balances' total
    assert findings.counts[checks.RESOLUTION_UNSETTLED] == 1
    assert findings.counts[checks.UNSENT_STORED] == 3
