-- Links into the admin console (src/links.rs): a bootstrap link signs one person in once as an
-- Owner; a setup link opens a workspace's IdP and SCIM pages to a customer's IT admin. Only the
-- SHA-256 of a link's secret is kept.
CREATE TABLE console_links (
    id            TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email         TEXT,
    secret_hash   BYTEA NOT NULL UNIQUE,
    created_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP NOT NULL,
    used_at       TIMESTAMP,
    revoked_at    TIMESTAMP
);
CREATE INDEX console_links_by_workspace ON console_links (workspace_id, kind, created_at);
