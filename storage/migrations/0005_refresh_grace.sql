-- A rotated refresh token names its successor, so a retry within the grace window gets the same
-- pair again. Tokens are never stored: the pair is signed again from the successor's id and
-- created_at, which only the server's keys turn into tokens.
ALTER TABLE refresh_tokens ADD COLUMN replaced_by uuid;
