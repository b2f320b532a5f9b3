-- Users, refresh tokens, markets, bets, the append-only ledger and daily rewards.
-- Money is NUMERIC(18,2), odds NUMERIC(5,4). The balance CHECK is the hard ceiling; the
-- configured MAX_BALANCE (never above it) is enforced by the game rules before any write.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,50}$'),
    password_hash text NOT NULL,
    balance       numeric(18,2) NOT NULL DEFAULT 0
                  CHECK (balance >= 0 AND balance <= 1000000),
    -- What the user's open bets would pay if all won, kept beside the balance: the cap rule reads
    -- it on every bet (under the user's row lock) instead of summing the open bets each time.
    -- Bets add to it, settlement takes away what it settles; `thisthat audit` checks it.
    open_potential_payout numeric(18,2) NOT NULL DEFAULT 0 CHECK (open_potential_payout >= 0),
    is_load_test  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The cap as a constraint: balance plus what every open bet could pay never exceeds the
    -- ceiling, so no settlement can ever breach it.
    CONSTRAINT users_cap_with_open_bets CHECK (balance + open_potential_payout <= 1000000)
);
CREATE UNIQUE INDEX users_username_ci ON users (lower(username));

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,                 -- the token's jti
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,                    -- every rotation of one login shares it
    token_hash  bytea NOT NULL UNIQUE,            -- sha256 of the token; the token itself is never stored
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    spent_at    timestamptz,                      -- rotated out: presenting it again is reuse
    revoked_at  timestamptz                       -- logout or reuse detection
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE markets (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source           text NOT NULL DEFAULT 'polymarket',
    source_id        text NOT NULL,               -- Polymarket condition id
    slug             text,
    question         text NOT NULL,
    this_label       text NOT NULL,
    that_label       text NOT NULL,
    this_token_id    text NOT NULL,
    that_token_id    text NOT NULL,
    this_odds        numeric(5,4) NOT NULL CHECK (this_odds BETWEEN 0.0001 AND 0.9999),
    that_odds        numeric(5,4) NOT NULL CHECK (that_odds BETWEEN 0.0001 AND 0.9999),
    odds_updated_at  timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'closed', 'resolved', 'cancelled')),
    accepting_orders boolean NOT NULL DEFAULT true,
    ends_at          timestamptz,
    resolved_side    text CHECK (resolved_side IN ('this', 'that', 'split')),
    category         text,
    image_url        text,
    volume           numeric NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    settled_at       timestamptz,                 -- set when every bet of the market is settled
    UNIQUE (source, source_id),
    CHECK ((status = 'resolved') = (resolved_side IS NOT NULL))
);
CREATE INDEX markets_status_volume ON markets (status, volume DESC, id);

CREATE TABLE odds_history (
    market_id uuid NOT NULL REFERENCES markets (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    this_odds numeric(5,4) NOT NULL,
    that_odds numeric(5,4) NOT NULL,
    PRIMARY KEY (market_id, at)
);

CREATE TABLE bets (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    market_id        uuid NOT NULL REFERENCES markets (id),
    client_bet_id    text NOT NULL CHECK (client_bet_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    side             text NOT NULL CHECK (side IN ('this', 'that')),
    amount           numeric(18,2) NOT NULL CHECK (amount > 0),
    odds             numeric(5,4) NOT NULL CHECK (odds BETWEEN 0.0001 AND 0.9999),
    potential_payout numeric(18,2) NOT NULL CHECK (potential_payout >= 0),
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'won', 'lost', 'split', 'refunded')),
    payout           numeric(18,2),
    placed_at        timestamptz NOT NULL DEFAULT now(),
    settled_at       timestamptz,
    UNIQUE (user_id, client_bet_id),
    CHECK ((status = 'open') = (settled_at IS NULL))
);
-- A user's bets newest first (bets:list, and their open bets for sync); a market's bets are
-- found by bets_market (0002). Few indexes: every one is written on each bet.
CREATE INDEX bets_user_placed ON bets (user_id, placed_at DESC, id DESC);

CREATE TABLE ledger (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq           bigint GENERATED ALWAYS AS IDENTITY,  -- total order for history pages
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('signup_bonus', 'daily_reward', 'bet_stake',
                                                'bet_payout', 'bet_refund')),
    amount        numeric(18,2) NOT NULL,
    balance_after numeric(18,2) NOT NULL CHECK (balance_after >= 0),
    bet_id        uuid REFERENCES bets (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('bet_stake', 'bet_payout', 'bet_refund')) = (bet_id IS NOT NULL)),
    CHECK ((kind = 'bet_stake') = (amount < 0))
);
CREATE INDEX ledger_user_seq ON ledger (user_id, seq DESC);
-- Invariant 2 in the schema: one stake per bet, at most one payout or refund per bet.
CREATE UNIQUE INDEX ledger_one_stake_per_bet ON ledger (bet_id) WHERE kind = 'bet_stake';
CREATE UNIQUE INDEX ledger_one_settlement_per_bet ON ledger (bet_id)
    WHERE kind IN ('bet_payout', 'bet_refund');

-- The ledger is append-only. Only the load-test reset (which sets thisthat.allow_ledger_delete
-- inside its own transaction) may remove rows, and only by deleting whole load-test users.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('thisthat.allow_ledger_delete', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledger is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE TABLE daily_rewards (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day     date NOT NULL,                        -- the UTC calendar day of the claim
    amount  numeric(18,2) NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, day)
);
