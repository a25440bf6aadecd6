-- Foundation: workspaces, API tokens and the audit log.
-- Ids are text (UUIDs or token ids) so that every table a later capability adds (people, memberships,
-- SCIM groups, IdP connections, sessions, grants) can reference them the same way on both backends.
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
    secret_hash   BLOB NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP,
    revoked_at    TIMESTAMP,
    last_used_at  TIMESTAMP
);
CREATE INDEX api_tokens_workspace ON api_tokens (workspace_id, created_at);

-- No foreign key to workspaces: the log outlives whatever it describes.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
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

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
