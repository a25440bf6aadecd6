DROP INDEX api_tokens_minted_by;
ALTER TABLE api_tokens DROP COLUMN minted_by;
