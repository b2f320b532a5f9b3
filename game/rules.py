"""The tunable numbers of the game, in one frozen object the server builds from its settings."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class GameRules:
    """Stake range, credit grants, the balance cap and how old odds may be for a bet."""

    min_bet_amount: Decimal = Decimal("10")
    max_bet_amount: Decimal = Decimal("10000")
    starting_credits: Decimal = Decimal("1000")
    daily_reward_credits: Decimal = Decimal("100")
    max_balance: Decimal = Decimal("1000000")
    odds_max_age_s: float = 120.0

    def __post_init__(self) -> None:
        for name in (
            "min_bet_amount",
            "max_bet_amount",
            "starting_credits",
            "daily_reward_credits",
            "max_balance",
        ):
            if not isinstance(getattr(self, name), Decimal):
                raise TypeError(f"{name} must be a Decimal, never a float")
        if not Decimal(0) < self.min_bet_amount <= self.max_bet_amount:
            raise ValueError("need 0 < min_bet_amount <= max_bet_amount")
        if self.max_balance <= 0 or self.odds_max_age_s <= 0:
            raise ValueError("max_balance and odds_max_age_s must be positive")
