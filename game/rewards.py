"""Daily reward eligibility: one claim per UTC calendar day, never above the balance cap."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from game.clock import ensure_utc
from game.errors import BalanceCapExceeded, RewardAlreadyClaimed


def reward_day(now: datetime) -> date:
    """The UTC calendar day a claim at `now` counts for (the unique key with the user)."""
    return ensure_utc(now).date()


def next_claim_at(now: datetime) -> datetime:
    """The next UTC midnight after `now`: when the next daily reward can be claimed."""
    utc = ensure_utc(now)
    return datetime.combine(utc.date() + timedelta(days=1), time(0), tzinfo=utc.tzinfo)


def check_reward(
    balance: Decimal, reward: Decimal, open_potential_payout: Decimal, max_balance: Decimal
) -> None:
    """Refuse (BALANCE_CAP_EXCEEDED) a reward that would lift the balance above the cap.

    As for a bet, the payouts of the open bets count: were they all to win after the reward,
    the balance must still stay within the cap. The database executes this rule when it pays
    (storage/wallet.py); this statement of it is what the parity test checks that against.
    """
    if balance + reward + open_potential_payout > max_balance:
        raise BalanceCapExceeded.for_reward(reward, max_balance)


def reward_already_claimed(now: datetime) -> RewardAlreadyClaimed:
    """The REWARD_ALREADY_CLAIMED refusal, telling the client when to come back."""
    return RewardAlreadyClaimed(next_claim_at(now))
