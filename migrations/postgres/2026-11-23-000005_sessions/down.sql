DROP TABLE sessions;
DROP TABLE session_keys;
DROP TABLE saml_member_groups;
DROP TABLE saml_assertions_seen;
