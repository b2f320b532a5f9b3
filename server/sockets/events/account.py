"""The player's own state: wallet, ledger history, daily reward, account settings, token refresh
and sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from game.errors import TokenInvalid
from server.application.services import SERVICES
from server.auth.tokens import TOKENS
from server.sockets.router import EVENTS, EventContext, EventRouter
from server.sockets.sessions import SESSIONS
from server.wire.schemas import AccountUpdate, AuthRefresh, Empty, WalletHistory
from server.wire.views import decode_seq_cursor, encode_cursor, ledger_entry_view, user_view


async def handle_wallet_get(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    row = await ctx.app[SERVICES].wallet.wallet(ctx.session.user_id)
    return {
        "balance": row.balance,
        "balanceVersion": row.balance_version,
        "openStake": row.open_stake,
        "openPotentialPayout": row.open_potential_payout,
    }


async def handle_wallet_history(ctx: EventContext, payload: WalletHistory) -> dict[str, Any]:
    before = None
    if payload.cursor is not None:
        before = decode_seq_cursor(payload.cursor)
    rows = await ctx.app[SERVICES].wallet.history(ctx.session.user_id, before, payload.limit)
    page = rows[: payload.limit]
    next_cursor = encode_cursor(page[-1].seq) if len(rows) > payload.limit else None
    return {"entries": [ledger_entry_view(row) for row in page], "nextCursor": next_cursor}


async def handle_reward_claim(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    paid = await ctx.app[SERVICES].wallet.claim_daily_reward(ctx.session.user_id, datetime.now(UTC))
    return {
        "amount": paid.amount,
        "balance": paid.balance,
        "balanceVersion": paid.balance_version,
        "nextClaimAt": paid.next_claim_at,
    }


async def handle_auth_refresh(ctx: EventContext, payload: AuthRefresh) -> dict[str, Any]:
    claims = ctx.app[TOKENS].verify(payload.token, "access", datetime.now(UTC))
    if claims.user_id != ctx.session.user_id:
        raise TokenInvalid("token belongs to another user")
    ctx.app[SESSIONS].renew(ctx.sid, claims.expires_at)
    return {"expiresAt": claims.expires_at}


async def handle_account_update(ctx: EventContext, payload: AccountUpdate) -> dict[str, Any]:
    """Change the player's account settings: `anonymous` hides their name in market activity."""
    user = await ctx.app[SERVICES].accounts.set_anonymous(ctx.session.user_id, payload.anonymous)
    return {"user": user_view(user)}


async def handle_sync(ctx: EventContext, payload: Empty) -> dict[str, Any]:
    user = await ctx.app[SERVICES].accounts.user(ctx.session.user_id)
    state: dict[str, Any] = {"user": user_view(user), "openBets": [], "markets": []}
    for contribute in ctx.app[EVENTS].sync_parts:
        state.update(await contribute(ctx))
    return state


def register(router: EventRouter) -> None:
    router.add("wallet:get", Empty, handle_wallet_get)
    router.add("wallet:history", WalletHistory, handle_wallet_history)
    router.add("reward:claim", Empty, handle_reward_claim)
    router.add("auth:refresh", AuthRefresh, handle_auth_refresh, live_token=False)
    router.add("account:update", AccountUpdate, handle_account_update)
    router.add("sync", Empty, handle_sync)
