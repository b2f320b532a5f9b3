"""`python -m chaos`: two server nodes, PostgreSQL, Redis and the fake Polymarket under a seeded
schedule of crashes, restarts, upstream errors and resolutions, with players betting throughout;
at the end every acked bet, every refusal and every credit is checked against the database."""
