INSERT INTO scim_values (workspace_id, resource_type, resource_id, attribute, element, sub, value, value_ci)
SELECT workspace_id, 'User', id, 'username', 0, '', user_name, user_name_ci FROM scim_users;
INSERT INTO scim_values (workspace_id, resource_type, resource_id, attribute, element, sub, value, value_ci)
SELECT workspace_id, 'User', id, 'active', 0, '', CASE WHEN active THEN 'true' ELSE 'false' END,
       CASE WHEN active THEN 'true' ELSE 'false' END
FROM scim_users;
