"""The player's own state: wallet, ledger history, daily reward, token refresh and sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from game.errors import ErrorCode, GameError
from game.rewards import next_claim_at, reward_already_claimed, reward_day
from server import appkeys
from server.rooms import emit_balance
from server.router import EventContext, router
from server.schemas import AuthRefresh, Empty, WalletHistory
from server.views import decode_seq_cursor, encode_cursor, ledger_entry_view, user_view
from storage import accounts, wallet


@router.event("wallet:get", Empty)
async def handle_wallet_get(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    row = await wallet.get_wallet(ctx.app[appkeys.DB_POOL], ctx.session.user_id)
    if row is None:
        raise GameError(ErrorCode.AUTH_REQUIRED, "user no longer exists")
    return {
        "balance": row["balance"],
        "openStake": row["open_stake"],
        "openPotentialPayout": row["open_potential_payout"],
    }


@router.event("wallet:history", WalletHistory)
async def handle_wallet_history(ctx: EventContext, payload: WalletHistory) -> dict[str, Any]:
    before = None
    if payload.cursor is not None:
        before = decode_seq_cursor(payload.cursor)
    rows = await wallet.history_page(
        ctx.app[appkeys.DB_POOL], ctx.session.user_id, before, payload.limit
    )
    page = rows[: payload.limit]
    next_cursor = encode_cursor(page[-1]["seq"]) if len(rows) > payload.limit else None
    return {"entries": [ledger_entry_view(row) for row in page], "nextCursor": next_cursor}


@router.event("reward:claim", Empty)
async def handle_reward_claim(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    rules = ctx.app[appkeys.RULES]
    now = datetime.now(UTC)
    try:
        balance = await wallet.claim_daily_reward(
            ctx.app[appkeys.DB_POOL],
            ctx.session.user_id,
            reward_day(now),
            rules.daily_reward_credits,
            rules.max_balance,
        )
    except wallet.RewardRefused as refused:
        if refused.already_claimed:
            raise reward_already_claimed(now) from None
        raise GameError(
            ErrorCode.BALANCE_CAP_EXCEEDED,
            f"a reward of {rules.daily_reward_credits} would take the balance above {rules.max_balance}",
        ) from None
    emit_balance(ctx.app[appkeys.PUSHES], ctx.session.user_id, balance, "reward")
    return {
        "amount": rules.daily_reward_credits,
        "balance": balance,
        "nextClaimAt": next_claim_at(now),
    }


@router.event("auth:refresh", AuthRefresh, live_token=False)
async def handle_auth_refresh(ctx: EventContext, payload: AuthRefresh) -> dict[str, Any]:
    claims = ctx.app[appkeys.TOKENS].verify(payload.token, "access", datetime.now(UTC))
    if claims.user_id != ctx.session.user_id:
        raise GameError(ErrorCode.TOKEN_INVALID, "token belongs to another user")
    ctx.app[appkeys.SESSIONS].renew(ctx.sid, claims.expires_at)
    return {"expiresAt": claims.expires_at}


@router.event("sync", Empty)
async def handle_sync(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    user = await accounts.get_user(ctx.app[appkeys.DB_POOL], ctx.session.user_id)
    if user is None:
        raise GameError(ErrorCode.AUTH_REQUIRED, "user no longer exists")
    state: dict[str, Any] = {"user": user_view(user), "openBets": [], "markets": []}
    for contribute in SYNC_PARTS:
        state.update(await contribute(ctx))
    return state


# Other parts of the game (bets, markets) add their share of `sync` here.
SYNC_PARTS: list[Any] = []
