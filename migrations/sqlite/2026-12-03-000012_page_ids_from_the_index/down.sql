CREATE INDEX scim_users_workspace ON scim_users (workspace_id, seq);
DROP INDEX scim_users_workspace_ids;
