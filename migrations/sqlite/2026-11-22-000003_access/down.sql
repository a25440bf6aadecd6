DROP TABLE grants;
DROP TABLE resource_labels;
DROP TABLE resources;
DROP TABLE attribute_mappings;
DROP TABLE group_mappings;
DROP TABLE member_roles;
ALTER TABLE workspaces DROP COLUMN access_version;
ALTER TABLE workspaces DROP COLUMN tracking_plan_approval;
