-- Market activity: a market's recent bets, newest first, with the name of each player who has
-- not chosen to hide it.

ALTER TABLE users ADD COLUMN anonymous boolean NOT NULL DEFAULT false;

-- A market's bets newest first. It takes the place of bets_market (0002): settlement and the
-- boards find a market's bets by its first column as well, and every index of bets is written on
-- each bet, so a market keeps one.
CREATE INDEX bets_market_placed ON bets (market_id, placed_at DESC, id DESC);
DROP INDEX bets_market;
