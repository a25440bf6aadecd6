DROP TABLE audit_events;
DROP FUNCTION audit_events_append_only();
DROP TABLE api_tokens;
DROP TABLE workspaces;
