-- The SAML responses a workspace's ACS received lately, decoded with signatures, certificates and
-- encrypted content redacted, and what became of each (src/saml/traces.rs): the console's sign-in
-- debugger. Kept 7 days and at most 50 per workspace.
CREATE TABLE saml_sign_in_traces (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    occurred_at   TIMESTAMP NOT NULL,
    outcome       TEXT NOT NULL,
    detail        TEXT,
    email         TEXT,
    attributes    TEXT NOT NULL,
    response      TEXT NOT NULL
);
CREATE INDEX saml_sign_in_traces_workspace ON saml_sign_in_traces (workspace_id, id);
CREATE INDEX saml_sign_in_traces_age ON saml_sign_in_traces (occurred_at);
