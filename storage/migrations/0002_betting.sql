-- Betting: `place_bet`, one bet in one database round trip, and the leaderboard outbox of settlement.
--
-- place_bet never raises for a game refusal: it answers a result code (and what the client needs
-- to hear: current odds, balance). So a later micro-batching path can call it for many bets inside
-- one transaction without subtransactions; such a caller must sort its batch by (market, user) to
-- keep the lock order below.
--
-- Lock order, everywhere a bet or a settlement touches them: the market row first, then user rows
-- (settlement: several users, ORDER BY id). Bets take the market row FOR SHARE, so a concurrent odds
-- update, close or resolution (all UPDATEs of that row) cannot slip between a check and the insert.

CREATE FUNCTION place_bet(
    p_user_id        uuid,
    p_market_id      uuid,
    p_client_bet_id  text,
    p_side           text,
    p_amount         numeric,        -- already validated: within the stake range, 2 decimals
    p_expected_odds  numeric,        -- NULL: take the current odds, whatever they are
    p_max_slippage   numeric,
    p_odds_max_age   interval,
    p_max_balance    numeric,
    OUT code         text,           -- placed | duplicate | market_not_found | market_closed |
                                     -- odds_stale | odds_changed | insufficient_credits |
                                     -- balance_cap_exceeded | user_not_found
    OUT detail       text,           -- why, for the human message
    OUT current_odds numeric,        -- the side's odds (odds_changed)
    OUT new_balance  numeric,        -- the balance after the bet (or now, if refused/duplicate)
    OUT bet          bets            -- the new bet, or the original one for a duplicate
) LANGUAGE plpgsql AS $$
DECLARE
    v_market      record;
    v_open_payout numeric;
    v_payout      numeric;
BEGIN
    -- Idempotency comes first: a repeat of a clientBetId answers the original bet whatever its
    -- payload (even for a market that has closed since) and debits nothing.
    SELECT b.* INTO bet FROM bets b WHERE b.user_id = p_user_id AND b.client_bet_id = p_client_bet_id;
    IF FOUND THEN
        code := 'duplicate';
        SELECT u.balance INTO new_balance FROM users u WHERE u.id = p_user_id;
        RETURN;
    END IF;
    bet := NULL;

    -- FOR SHARE: concurrent bets on the market proceed together; the feed's UPDATE of this row
    -- (odds, close, resolution) waits for them, and they wait for it and then re-read the row.
    SELECT m.status, m.accepting_orders, m.ends_at, m.odds_updated_at, m.this_odds, m.that_odds
    INTO v_market
    FROM markets m WHERE m.id = p_market_id
    FOR SHARE;
    IF NOT FOUND THEN
        code := 'market_not_found';
        RETURN;
    END IF;
    IF v_market.status <> 'open' THEN
        code := 'market_closed';
        detail := 'market is ' || v_market.status;
        RETURN;
    END IF;
    -- A market whose end time is exactly now has ended.
    IF v_market.ends_at IS NOT NULL AND v_market.ends_at <= now() THEN
        code := 'market_closed';
        detail := 'market is past its end time';
        RETURN;
    END IF;
    IF NOT v_market.accepting_orders THEN
        code := 'market_closed';
        detail := 'market is not accepting orders upstream';
        RETURN;
    END IF;
    -- Exactly odds_max_age old is still fresh.
    IF v_market.odds_updated_at < now() - p_odds_max_age THEN
        code := 'odds_stale';
        detail := round(extract(epoch FROM now() - v_market.odds_updated_at))::text;
        RETURN;
    END IF;

    current_odds := CASE p_side WHEN 'this' THEN v_market.this_odds ELSE v_market.that_odds END;
    -- Odds are implied probabilities: higher is a smaller payout, so worse. Better always passes.
    IF p_expected_odds IS NOT NULL AND current_odds > p_expected_odds + p_max_slippage THEN
        code := 'odds_changed';
        detail := (p_expected_odds + p_max_slippage)::text;
        RETURN;
    END IF;
    -- amount / odds rounded down to the cent (game.bets.potential_payout).
    v_payout := trunc(p_amount / current_odds, 2);

    -- The user row lock serialises everything that moves this user's money (bets, settlement,
    -- rewards), so the balance and the open payouts read below stay true until commit.
    SELECT u.balance, u.open_potential_payout INTO new_balance, v_open_payout
    FROM users u WHERE u.id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        code := 'user_not_found';
        RETURN;
    END IF;
    IF new_balance < p_amount THEN
        code := 'insufficient_credits';
        RETURN;
    END IF;
    -- The cap rule: if every open bet (this one included) won, the balance stays within the cap.
    IF (new_balance - p_amount) + v_open_payout + v_payout > p_max_balance THEN
        code := 'balance_cap_exceeded';
        detail := ((new_balance - p_amount) + v_open_payout + v_payout)::text;
        RETURN;
    END IF;

    INSERT INTO bets (user_id, market_id, client_bet_id, side, amount, odds, potential_payout)
    VALUES (p_user_id, p_market_id, p_client_bet_id, p_side, p_amount, current_odds, v_payout)
    ON CONFLICT (user_id, client_bet_id) DO NOTHING
    RETURNING * INTO bet;
    IF NOT FOUND THEN
        -- The same clientBetId committed while we waited for the user row: answer that bet,
        -- debit nothing.
        SELECT b.* INTO bet FROM bets b WHERE b.user_id = p_user_id AND b.client_bet_id = p_client_bet_id;
        code := 'duplicate';
        current_odds := NULL;
        RETURN;
    END IF;

    -- The guard cannot fail under the lock; it stays as a second line against a negative balance.
    UPDATE users u SET balance = u.balance - p_amount,
                       open_potential_payout = u.open_potential_payout + v_payout
    WHERE u.id = p_user_id AND u.balance >= p_amount
    RETURNING u.balance INTO new_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'place_bet: balance guard failed for user %', p_user_id;
    END IF;
    INSERT INTO ledger (user_id, kind, amount, balance_after, bet_id)
    VALUES (p_user_id, 'bet_stake', -p_amount, new_balance, bet.id);
    code := 'placed';
END $$;

-- Markets whose settlement committed but whose leaderboard scores may not be in Redis yet. The row
-- commits with the market's status transition and is deleted once the scores of every player of
-- the market were recomputed from the ledger after the market was fully settled; so a crash between
-- the commit and the Redis write is repaired by the next `settle_pending` run.
CREATE TABLE leaderboard_outbox (
    market_id  uuid PRIMARY KEY REFERENCES markets (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Settlement finds the bets of a market in chunks; PnL queries scan a user's settled bets.
CREATE INDEX bets_market ON bets (market_id);
CREATE INDEX bets_settled_at ON bets (settled_at) WHERE status <> 'open';
