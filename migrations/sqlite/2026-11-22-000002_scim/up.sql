-- SCIM users and groups of a workspace. `document` holds the client-writable attributes as JSON;
-- `scim_values` indexes every simple value in them so that filters run in SQL; memberships are rows
-- of their own so that adding one member to a large group writes one row.
CREATE TABLE scim_users (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_name     TEXT NOT NULL,
    user_name_ci  TEXT NOT NULL,
    external_id   TEXT,
    active        BOOLEAN NOT NULL,
    document      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX scim_users_user_name ON scim_users (workspace_id, user_name_ci);
CREATE INDEX scim_users_workspace ON scim_users (workspace_id, seq);

CREATE TABLE scim_groups (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    display_name  TEXT NOT NULL,
    external_id   TEXT,
    document      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX scim_groups_workspace ON scim_groups (workspace_id, seq);

-- member_id is a scim_users or scim_groups id, as member_type says.
CREATE TABLE scim_group_members (
    group_id     TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    member_id    TEXT NOT NULL,
    member_type  TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX scim_group_members_member ON scim_group_members (member_id);

-- One row per simple value: attribute and sub are lower-case canonical names (an extension's
-- attribute is prefixed by its URN), element numbers the values of a multi-valued attribute.
-- One index serves every comparison: case-exact ones add `value = ?` to `value_ci = lower(?)`.
CREATE TABLE scim_values (
    workspace_id   TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    attribute      TEXT NOT NULL,
    element        INTEGER NOT NULL,
    sub            TEXT NOT NULL,
    value          TEXT NOT NULL,
    value_ci       TEXT NOT NULL,
    PRIMARY KEY (resource_id, attribute, element, sub)
) WITHOUT ROWID;
CREATE INDEX scim_values_ci ON scim_values (workspace_id, resource_type, attribute, sub, value_ci);
