-- The member whose session minted a token through the admin API; NULL for a token the operator
-- made with the CLI (or one minted by such a token). A minted token carries that person's
-- authority, no more, and ends when they leave the workspace.
ALTER TABLE api_tokens ADD COLUMN minted_by TEXT;
CREATE INDEX api_tokens_minted_by ON api_tokens (minted_by);
