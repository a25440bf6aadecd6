-- A user's userName and active are read from their columns of scim_users by every filter and
-- sort; their rows in the value index only cost writes.
DELETE FROM scim_values WHERE resource_type = 'User' AND attribute IN ('username', 'active');
