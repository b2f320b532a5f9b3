"""PostgreSQL and Redis: pool setup, migrations, transactional game operations, keys and caches."""
