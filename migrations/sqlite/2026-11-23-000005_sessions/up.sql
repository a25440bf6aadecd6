-- Assertions already accepted, by IdP and assertion ID, kept until they expire: a response any
-- replica has accepted is refused by every replica.
CREATE TABLE saml_assertions_seen (
    idp_entity_id  TEXT NOT NULL,
    assertion_id   TEXT NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (idp_entity_id, assertion_id)
);
CREATE INDEX saml_assertions_seen_expiry ON saml_assertions_seen (expires_at);

-- The groups the IdP asserted at a member's latest login. Like SCIM groups, they reach roles
-- only through the workspace's group mappings.
CREATE TABLE saml_member_groups (
    member_id   TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    group_name  TEXT NOT NULL,
    PRIMARY KEY (member_id, group_name)
);

-- Keys that sign session tokens (RS256). The newest signs; older ones stay published until no
-- token they signed can still be valid. Stored as PKCS#8 PEM; the database is the secret.
CREATE TABLE session_keys (
    kid              TEXT PRIMARY KEY NOT NULL,
    private_key_pem  TEXT NOT NULL,
    created_at       TIMESTAMP NOT NULL
);

-- One row per login, for revocation and the checks made on every request. A person is their
-- normalised email; member_id is their membership in the workspace they logged into, and
-- deleting that membership ends the session. name_id and session_index are what single logout
-- names the session by.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    member_id       TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    name_id         TEXT NOT NULL,
    session_index   TEXT,
    created_at      TIMESTAMP NOT NULL,
    idp_expires_at  TIMESTAMP,
    revoked_at      TIMESTAMP
);
CREATE INDEX sessions_member ON sessions (member_id);
CREATE INDEX sessions_name_id ON sessions (workspace_id, name_id);
