-- No row per odds change any more: the minute and hour candles (0007), which record_odds upserts
-- with the odds, carry every chart, and their backfill from odds_history already ran in 0007.
-- Nothing writes or reads odds_history now, so it goes, and its indexes with it.
--
-- Upgrading node by node: while a node of an earlier release holds the feed lease, its odds
-- writes are refused (its statement still names the table); it keeps serving and retrying, and
-- odds stand still until the lease is on an upgraded node. A node hands the lease over on
-- SIGTERM, so finish the rollout promptly.

DROP TABLE odds_history;
