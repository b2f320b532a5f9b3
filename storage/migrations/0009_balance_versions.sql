-- Balances with a version: place_bets and place_bet also answer the seq of the ledger row that left
-- the balance they answer. Every change of a user's balance appends a ledger row while the user's
-- row is locked, so a user's seqs rise in commit order: a client that keeps the balance with the
-- highest version keeps the newest, whatever order the pushes arrive in (docs/protocol.md).
--
-- The functions are the ones of 0004 but for the answer (a new column, so they are dropped and
-- created again); the rules and the lock order are unchanged.

DROP FUNCTION place_bet(uuid, uuid, text, text, numeric, numeric, numeric, interval, numeric);
DROP FUNCTION place_bets(uuid[], uuid[], text[], text[], numeric[], numeric[], numeric[], interval,
                         numeric);

CREATE FUNCTION place_bets(
    p_user_ids       uuid[],
    p_market_ids     uuid[],
    p_client_bet_ids text[],
    p_sides          text[],
    p_amounts        numeric[],      -- already validated: within the stake range, 2 decimals
    p_expected_odds  numeric[],      -- NULL: take the current odds, whatever they are
    p_max_slippages  numeric[],
    p_odds_max_age   interval,
    p_max_balance    numeric
) RETURNS TABLE (ord bigint, code text, detail text, current_odds numeric, new_balance numeric,
               balance_version bigint, bet bets)
-- code: placed | duplicate | market_not_found | market_closed | odds_stale | odds_changed |
--       insufficient_credits | balance_cap_exceeded | user_not_found
LANGUAGE plpgsql
-- Cheap statements whose row estimates can look expensive: compiling them costs more than it saves.
SET jit = off
AS $$
DECLARE
    n             int := coalesce(cardinality(p_user_ids), 0);
    -- Per bet (index = arrival order).
    v_codes       text[];
    v_details     text[];
    v_odds        numeric[];
    v_payouts     numeric[];
    v_balances    numeric[];    -- the balance after the bet (or at its turn, if not placed)
    v_user_ix     int[];        -- position of the bet's user in v_user_ids (NULL: no such user)
    v_key_ix      int[];        -- one number per (user, clientBetId)
    v_exists      boolean[];    -- a bet with that (user, clientBetId) was stored before the batch
    v_bet_ids     uuid[];       -- the new bet's id (NULL: not placed)
    -- Per locked user (id order): the running balance and open potential payout.
    v_user_ids    uuid[];
    v_balance     numeric[];
    v_open        numeric[];
    v_user_rows   tid[];        -- the locked row versions
    v_moved       boolean[];    -- a bet of this user was placed
    v_moved_count int := 0;
    v_updated     int;
    -- Per (user, clientBetId): a bet holds that key already.
    v_taken       boolean[];
    i             int;
    u             int;
    k             int;
    v_worst       numeric;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;

    -- 1. Markets FOR SHARE in id order; every market rule decided per bet in one statement.
    PERFORM 1 FROM markets m WHERE m.id = ANY(p_market_ids) ORDER BY m.id FOR SHARE;
    SELECT array_agg(v.code ORDER BY b.ord), array_agg(v.detail ORDER BY b.ord),
           array_agg(v.odds ORDER BY b.ord), array_agg(v.payout ORDER BY b.ord)
    INTO v_codes, v_details, v_odds, v_payouts
    FROM unnest(p_market_ids, p_sides, p_amounts, p_expected_odds, p_max_slippages) WITH ORDINALITY
         AS b(market_id, side, amount, expected_odds, max_slippage, ord)
    -- LATERAL ... LIMIT 1 here and below: one index probe per bet, whatever the planner guesses
    -- about the size of the batch or the table (a cached plan must not hash a whole table).
    LEFT JOIN LATERAL (SELECT * FROM markets m WHERE m.id = b.market_id LIMIT 1) m ON true
    CROSS JOIN LATERAL (
        SELECT CASE WHEN m.id IS NULL OR m.status <> 'open' OR m.accepting_orders IS NOT TRUE
                         OR m.ends_at <= now() OR m.odds_updated_at < now() - p_odds_max_age
                    THEN NULL
                    WHEN b.side = 'this' THEN m.this_odds ELSE m.that_odds END AS side_odds
    ) o
    CROSS JOIN LATERAL (
        SELECT
            CASE
                WHEN m.id IS NULL THEN 'market_not_found'
                WHEN m.status <> 'open' THEN 'market_closed'
                -- A market whose end time is exactly now has ended.
                WHEN m.ends_at <= now() THEN 'market_closed'
                WHEN NOT m.accepting_orders THEN 'market_closed'
                -- Exactly odds_max_age old is still fresh.
                WHEN m.odds_updated_at < now() - p_odds_max_age THEN 'odds_stale'
                -- Odds are implied probabilities: higher is a smaller payout, so worse.
                WHEN o.side_odds > b.expected_odds + b.max_slippage THEN 'odds_changed'
            END AS code,
            CASE
                WHEN m.id IS NULL THEN NULL
                WHEN m.status <> 'open' THEN 'market is ' || m.status
                WHEN m.ends_at <= now() THEN 'market is past its end time'
                WHEN NOT m.accepting_orders THEN 'market is not accepting orders upstream'
                WHEN m.odds_updated_at < now() - p_odds_max_age
                    THEN round(extract(epoch FROM now() - m.odds_updated_at))::text
                WHEN o.side_odds > b.expected_odds + b.max_slippage
                    THEN (b.expected_odds + b.max_slippage)::text
            END AS detail,
            o.side_odds AS odds,
            -- amount / odds rounded down to the cent (what a winning bet pays).
            trunc(b.amount / o.side_odds, 2) AS payout
    ) v;

    -- 2. Users FOR UPDATE in id order: they serialise everything that moves a user's money, so
    --    the balances read here stay true until commit.
    SELECT array_agg(l.id), array_agg(l.ctid), array_agg(l.balance), array_agg(l.open_potential_payout)
    INTO v_user_ids, v_user_rows, v_balance, v_open
    FROM (SELECT u.id, u.ctid, u.balance, u.open_potential_payout FROM users u
          WHERE u.id = ANY(p_user_ids) ORDER BY u.id FOR UPDATE) l;

    -- 3. Who is who, and which clientBetIds are taken already (read under the user locks: every
    --    bet insert holds its user's lock, so none can commit between this read and ours).
    SELECT array_agg(s.user_ix ORDER BY s.ord), array_agg(s.key_ix ORDER BY s.ord),
           array_agg(s.found ORDER BY s.ord)
    INTO v_user_ix, v_key_ix, v_exists
    FROM (
        SELECT b.ord, lu.ix::int AS user_ix,
               dense_rank() OVER (ORDER BY b.user_id, b.client_bet_id)::int AS key_ix,
               e.found IS NOT NULL AS found
        FROM unnest(p_user_ids, p_client_bet_ids) WITH ORDINALITY AS b(user_id, client_bet_id, ord)
        LEFT JOIN unnest(v_user_ids) WITH ORDINALITY AS lu(id, ix) ON lu.id = b.user_id
        LEFT JOIN LATERAL (SELECT true AS found FROM bets e
                           WHERE e.user_id = b.user_id AND e.client_bet_id = b.client_bet_id
                           LIMIT 1) e ON true
    ) s;

    -- 4. The money rules, bet by bet in arrival order, in memory: first come, first served.
    v_balances := array_fill(NULL::numeric, ARRAY[n]);
    v_taken := array_fill(false, ARRAY[n]);
    v_bet_ids := array_fill(NULL::uuid, ARRAY[n]);
    v_moved := array_fill(false, ARRAY[coalesce(cardinality(v_user_ids), 0)]);
    FOR i IN 1..n LOOP
        u := v_user_ix[i];
        k := v_key_ix[i];
        -- Idempotency comes first: a repeat answers the original bet whatever its payload (even
        -- for a market that has closed since) and debits nothing.
        IF v_taken[k] OR v_exists[i] THEN
            v_codes[i] := 'duplicate';
            v_details[i] := NULL;
            v_odds[i] := NULL;
            v_balances[i] := v_balance[u];
            CONTINUE;
        END IF;
        IF v_codes[i] IS NOT NULL THEN
            CONTINUE;  -- refused by a market rule
        END IF;
        IF u IS NULL THEN
            v_codes[i] := 'user_not_found';
            CONTINUE;
        END IF;
        v_balances[i] := v_balance[u];
        IF v_balance[u] < p_amounts[i] THEN
            v_codes[i] := 'insufficient_credits';
            CONTINUE;
        END IF;
        -- The cap rule: if every open bet (this one included) won, the balance stays within it.
        v_worst := (v_balance[u] - p_amounts[i]) + v_open[u] + v_payouts[i];
        IF v_worst > p_max_balance THEN
            v_codes[i] := 'balance_cap_exceeded';
            v_details[i] := v_worst::text;
            CONTINUE;
        END IF;
        v_balance[u] := v_balance[u] - p_amounts[i];
        v_open[u] := v_open[u] + v_payouts[i];
        v_balances[i] := v_balance[u];
        v_codes[i] := 'placed';
        v_bet_ids[i] := gen_random_uuid();
        IF NOT v_moved[u] THEN
            v_moved[u] := true;
            v_moved_count := v_moved_count + 1;
        END IF;
        v_taken[k] := true;
    END LOOP;

    -- 5. The writes, set-based. Ledger rows are numbered (seq) in arrival order, so each
    --    user's last row carries the balance it left.
    INSERT INTO bets (id, user_id, market_id, client_bet_id, side, amount, odds, potential_payout)
    SELECT d.id, d.user_id, d.market_id, d.client_bet_id, d.side, d.amount, d.odds, d.payout
    FROM unnest(v_bet_ids, p_user_ids, p_market_ids, p_client_bet_ids, p_sides, p_amounts, v_odds,
                v_payouts) AS d(id, user_id, market_id, client_bet_id, side, amount, odds, payout)
    WHERE d.id IS NOT NULL;
    IF FOUND THEN
        INSERT INTO ledger (user_id, kind, amount, balance_after, bet_id)
        SELECT d.user_id, 'bet_stake', -d.amount, d.balance, d.id
        FROM unnest(v_bet_ids, p_user_ids, p_amounts, v_balances) WITH ORDINALITY
             AS d(id, user_id, amount, balance, ord)
        WHERE d.id IS NOT NULL
        ORDER BY d.ord;
        -- Users last: the foreign-key checks of the inserts above find the row versions this
        -- batch already holds FOR UPDATE, so they lock nothing new. By the row versions locked in
        -- step 2 (nothing else can have moved them since): a TID scan, whatever the planner
        -- guesses about the table.
        UPDATE users AS t SET balance = s.balance, open_potential_payout = s.open
        FROM unnest(v_user_rows, v_balance, v_open, v_moved) AS s(row_version, balance, open, moved)
        WHERE t.ctid = s.row_version AND s.moved;
        GET DIAGNOSTICS v_updated = ROW_COUNT;
        IF v_updated <> v_moved_count THEN
            RAISE EXCEPTION 'place_bets: % of % users updated', v_updated, v_moved_count;
        END IF;
    END IF;

    -- 6. Every bet's answer in arrival order, with the bet it placed or repeats, and the balance
    --    with its version: the seq of the ledger row that left it. For a new bet, its stake row;
    --    for a repeat, which answers the balance at its turn, the user's newest row before the
    --    stake rows of the user's later bets in this batch (their seqs follow arrival order).
    RETURN QUERY
    SELECT d.ord, d.code, d.detail, d.odds, d.balance, coalesce(s.seq, r.seq), b.e
    FROM unnest(p_user_ids, p_client_bet_ids, v_codes, v_details, v_odds, v_balances)
         WITH ORDINALITY AS d(user_id, client_bet_id, code, detail, odds, balance, ord)
    LEFT JOIN LATERAL (SELECT e FROM bets e
                       WHERE d.code IN ('placed', 'duplicate')
                         AND e.user_id = d.user_id AND e.client_bet_id = d.client_bet_id
                       LIMIT 1) b ON true
    LEFT JOIN LATERAL (SELECT l.seq FROM ledger l
                       WHERE d.code = 'placed' AND l.bet_id = (b.e).id AND l.kind = 'bet_stake'
                       LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT l.seq FROM ledger l
                       WHERE d.code = 'duplicate' AND l.user_id = d.user_id
                         AND l.seq < coalesce(
                             (SELECT min(later.seq)
                              FROM unnest(v_bet_ids, p_user_ids) WITH ORDINALITY
                                   AS x(id, user_id, ord)
                              JOIN ledger later ON later.bet_id = x.id AND later.kind = 'bet_stake'
                              WHERE x.ord > d.ord AND x.user_id = d.user_id),
                             9223372036854775807)
                       ORDER BY l.seq DESC
                       LIMIT 1) r ON true
    ORDER BY d.ord;
END $$;

-- One bet is a batch of one.
CREATE FUNCTION place_bet(
    p_user_id        uuid,
    p_market_id      uuid,
    p_client_bet_id  text,
    p_side           text,
    p_amount         numeric,
    p_expected_odds  numeric,
    p_max_slippage   numeric,
    p_odds_max_age   interval,
    p_max_balance    numeric,
    OUT code         text,
    OUT detail       text,
    OUT current_odds numeric,
    OUT new_balance  numeric,
    OUT balance_version bigint,
    OUT bet          bets
) LANGUAGE sql AS $$
    SELECT r.code, r.detail, r.current_odds, r.new_balance, r.balance_version, r.bet
    FROM place_bets(ARRAY[p_user_id], ARRAY[p_market_id], ARRAY[p_client_bet_id], ARRAY[p_side],
                    ARRAY[p_amount], ARRAY[p_expected_odds], ARRAY[p_max_slippage],
                    p_odds_max_age, p_max_balance) r
$$;
