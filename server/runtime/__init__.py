"""What every room runs on: the database pool and Redis, background jobs, metrics, logs, local limits and load shedding."""
