-- Foundation: workspaces, API tokens and the audit log.
-- Ids are text (UUIDs or token ids) so that every table a later capability adds (people, memberships,
-- SCIM groups, IdP connections, sessions, grants) can reference them the same way on both backends.
-- Times are UTC in TIMESTAMP columns: the portable diesel schema has no Timestamptz.
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    hipaa       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP,
    revoked_at    TIMESTAMP,
    last_used_at  TIMESTAMP
);
CREATE INDEX api_tokens_workspace ON api_tokens (workspace_id, created_at);

-- No foreign key to workspaces: the log outlives whatever it describes.
CREATE TABLE audit_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   TIMESTAMP NOT NULL,
    workspace_id  TEXT,
    actor_type    TEXT NOT NULL,
    actor_id      TEXT,
    action        TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT,
    details       TEXT NOT NULL,
    request_id    TEXT
);
CREATE INDEX audit_events_workspace ON audit_events (workspace_id, id);
CREATE INDEX audit_events_workspace_action ON audit_events (workspace_id, action, id);
CREATE INDEX audit_events_workspace_target ON audit_events (workspace_id, target_type, target_id, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
