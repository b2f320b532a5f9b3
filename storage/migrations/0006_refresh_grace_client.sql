-- A rotated refresh token records who rotated it: a hash of the client (its address and
-- User-Agent). Within the grace window only that client gets the same pair again; anyone else
-- presenting the spent token is reuse, and revokes the family.
ALTER TABLE refresh_tokens ADD COLUMN spent_by bytea;
