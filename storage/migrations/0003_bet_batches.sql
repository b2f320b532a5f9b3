-- Many bets in one transaction and one round trip, each answered with its own result.
--
-- Deadlock freedom: every lock is taken in one global order. First the batch's markets FOR SHARE
-- in id order, then its users FOR UPDATE in id order; only then does place_bet run for each bet
-- (its own locks are already held, so it waits for nothing). Settlement locks one market, then
-- users in id order; odds updates lock markets in id order; rewards lock one user. No two of
-- these can wait on each other in a cycle.

CREATE FUNCTION place_bets(
    p_user_ids       uuid[],
    p_market_ids     uuid[],
    p_client_bet_ids text[],
    p_sides          text[],
    p_amounts        numeric[],
    p_expected_odds  numeric[],
    p_max_slippages  numeric[],
    p_odds_max_age   interval,
    p_max_balance    numeric
) RETURNS TABLE (ord bigint, code text, detail text, current_odds numeric, new_balance numeric, bet bets)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM markets m WHERE m.id = ANY(p_market_ids) ORDER BY m.id FOR SHARE;
    PERFORM 1 FROM users u WHERE u.id = ANY(p_user_ids) ORDER BY u.id FOR UPDATE;
    -- Bets are placed in the order they arrived: two bets of one user that cannot both be paid
    -- for are decided first come, first served.
    RETURN QUERY
    SELECT b.ord, r.code, r.detail, r.current_odds, r.new_balance, r.bet
    FROM unnest(p_user_ids, p_market_ids, p_client_bet_ids, p_sides, p_amounts, p_expected_odds,
                p_max_slippages) WITH ORDINALITY
         AS b(user_id, market_id, client_bet_id, side, amount, expected_odds, max_slippage, ord)
    CROSS JOIN LATERAL place_bet(b.user_id, b.market_id, b.client_bet_id, b.side, b.amount,
                                 b.expected_odds, b.max_slippage, p_odds_max_age, p_max_balance) r
    ORDER BY b.ord;
END $$;
