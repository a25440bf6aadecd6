-- A page of users read before is read again by its ids alone (directory::users::list_ids_first).
-- With the id in the workspace's index, the ids can come from an index-only scan, without a visit
-- to each row in the table.
CREATE INDEX scim_users_workspace_ids ON scim_users (workspace_id, seq) INCLUDE (id);
DROP INDEX scim_users_workspace;
