-- The setup link a SCIM token was made through, if any: a setup link's holder may revoke only
-- such tokens, never the operator's or a person's (src/console/provisioning.rs).
ALTER TABLE api_tokens ADD COLUMN setup_link_id TEXT;
