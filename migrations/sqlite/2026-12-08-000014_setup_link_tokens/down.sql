ALTER TABLE api_tokens DROP COLUMN setup_link_id;
