-- The access model: roles given directly and through IdP groups, the attribute mapping used at SAML
-- login, resources with labels, and resource-level grants. Roles, levels and kinds are stored by
-- their wire names (`owner`, `read_write`, `source`) and checked in the code that writes them.
ALTER TABLE workspaces ADD COLUMN tracking_plan_approval BOOLEAN NOT NULL DEFAULT TRUE;
-- Raised by every audited change of the workspace, in the change's transaction: what was loaded
-- for authorization decisions at one version is still true while the version is unchanged.
ALTER TABLE workspaces ADD COLUMN access_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE member_roles (
    member_id     TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (member_id, role)
);
CREATE INDEX member_roles_workspace ON member_roles (workspace_id, role);

-- idp_group is the name as the admin typed it; idp_group_ci, its lower case, is what matches a
-- SCIM group's displayName or a SAML `groups` value.
CREATE TABLE group_mappings (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    idp_group_ci  TEXT NOT NULL,
    idp_group     TEXT NOT NULL,
    role          TEXT NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (workspace_id, idp_group_ci)
);

CREATE TABLE attribute_mappings (
    workspace_id  TEXT PRIMARY KEY NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    preset        TEXT,
    email         TEXT NOT NULL,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    role          TEXT,
    groups        TEXT,
    updated_at    TIMESTAMP NOT NULL
);

-- source_id: the source a destination is connected to. write_key_hash: SHA-256 of a source's
-- write key, unique so that a key finds its source without a scan.
CREATE TABLE resources (
    id              TEXT PRIMARY KEY NOT NULL,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    source_id       TEXT REFERENCES resources (id) ON DELETE CASCADE,
    write_key_hash  BLOB UNIQUE,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);
CREATE INDEX resources_workspace ON resources (workspace_id, kind, name);
CREATE INDEX resources_source ON resources (source_id);

-- label is `key:value`.
CREATE TABLE resource_labels (
    resource_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL,
    label         TEXT NOT NULL,
    PRIMARY KEY (resource_id, label)
);
CREATE INDEX resource_labels_label ON resource_labels (workspace_id, label);

-- A grant gives a level on one resource or on every resource carrying a label, to a member (by
-- id) or an IdP group (by lower-case name, like group_mappings).
CREATE TABLE grants (
    id             TEXT PRIMARY KEY NOT NULL,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    subject_type   TEXT NOT NULL,
    subject        TEXT NOT NULL,
    resource_id    TEXT REFERENCES resources (id) ON DELETE CASCADE,
    label          TEXT,
    level          TEXT NOT NULL,
    expires_at     TIMESTAMP,
    justification  TEXT,
    approver       TEXT,
    review_date    TEXT,
    created_at     TIMESTAMP NOT NULL,
    CHECK ((resource_id IS NULL) <> (label IS NULL))
);
CREATE INDEX grants_subject ON grants (workspace_id, subject_type, subject);
CREATE INDEX grants_resource ON grants (resource_id);
