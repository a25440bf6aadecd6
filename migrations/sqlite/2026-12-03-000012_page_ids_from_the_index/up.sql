-- A page of users read before is read again by its ids alone (directory::users::list_ids_first).
-- With the id in the workspace's index, the ids come from the index, without a look-up of each
-- row in the table: a page of 100 went from 58 to 45 microseconds in SQLite at 150,000 users.
CREATE INDEX scim_users_workspace_ids ON scim_users (workspace_id, seq, id);
DROP INDEX scim_users_workspace;
