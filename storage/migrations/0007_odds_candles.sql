-- Odds history for charts, downsampled so it stays bounded: candles (open, high, low, close of
-- the "this" side's shown odds) per minute, kept 30 days, and per hour, kept for the market's life.
-- record_odds upserts both in the statement that writes the odds, for every changed market at once.
--
-- The shown odds are a step function: a candle's open is the value in force when its bucket
-- began (the odds before the bucket's first change), and high and low cover that value too, so a
-- candle is exact without the changes that came before it. A bucket without a change has no row:
-- the odds held at the previous close. Buckets start on whole UTC minutes and hours.
--
-- odds_history keeps every change, for a short while only (storage/odds_history.py prunes it).

CREATE TABLE odds_minutes (
    market_id    uuid NOT NULL REFERENCES markets (id) ON DELETE CASCADE,
    bucket_start timestamptz NOT NULL,
    open         numeric(5,4) NOT NULL,
    high         numeric(5,4) NOT NULL,
    low          numeric(5,4) NOT NULL,
    close        numeric(5,4) NOT NULL,
    PRIMARY KEY (market_id, bucket_start)
) WITH (fillfactor = 90);  -- room for the in-place (HOT) updates of the current minute

CREATE TABLE odds_hours (
    market_id    uuid NOT NULL REFERENCES markets (id) ON DELETE CASCADE,
    bucket_start timestamptz NOT NULL,
    open         numeric(5,4) NOT NULL,
    high         numeric(5,4) NOT NULL,
    low          numeric(5,4) NOT NULL,
    close        numeric(5,4) NOT NULL,
    PRIMARY KEY (market_id, bucket_start)
) WITH (fillfactor = 70);  -- an hour's row is rewritten on every change within it

-- Retention finds old rows by time. Rows arrive in time order, so a BRIN index (a few pages for
-- millions of rows, nearly free to maintain) is enough.
CREATE INDEX odds_minutes_bucket_brin ON odds_minutes USING brin (bucket_start);
CREATE INDEX odds_history_at_brin ON odds_history USING brin (at);

-- Candles for the history recorded so far: minutes of the last 30 days, every hour.
INSERT INTO odds_minutes (market_id, bucket_start, open, high, low, close)
SELECT market_id, bucket_start,
       (array_agg(shown ORDER BY at))[1],
       max(greatest(shown, this_odds)),
       min(least(shown, this_odds)),
       (array_agg(this_odds ORDER BY at DESC))[1]
FROM (
    SELECT market_id, at, this_odds,
           date_bin('1 minute', at, timestamptz '2000-01-01 00:00:00+00') AS bucket_start,
           coalesce(lag(this_odds) OVER (PARTITION BY market_id ORDER BY at), this_odds) AS shown
    FROM odds_history
) AS changes
WHERE bucket_start >= now() - interval '30 days'
GROUP BY market_id, bucket_start;

INSERT INTO odds_hours (market_id, bucket_start, open, high, low, close)
SELECT market_id, bucket_start,
       (array_agg(shown ORDER BY at))[1],
       max(greatest(shown, this_odds)),
       min(least(shown, this_odds)),
       (array_agg(this_odds ORDER BY at DESC))[1]
FROM (
    SELECT market_id, at, this_odds,
           date_bin('1 hour', at, timestamptz '2000-01-01 00:00:00+00') AS bucket_start,
           coalesce(lag(this_odds) OVER (PARTITION BY market_id ORDER BY at), this_odds) AS shown
    FROM odds_history
) AS changes
GROUP BY market_id, bucket_start;
