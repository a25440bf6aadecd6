-- One SAML identity provider connection per workspace, and its signing certificates (several at
-- once, for rollover). Options have the defaults the contract gives.
CREATE TABLE idp_connections (
    workspace_id              TEXT PRIMARY KEY NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    entity_id                 TEXT NOT NULL,
    sso_url                   TEXT NOT NULL,
    slo_url                   TEXT,
    metadata_url              TEXT,
    metadata_valid_until      TIMESTAMP,
    allow_idp_initiated       BOOLEAN NOT NULL,
    require_signed_response   BOOLEAN NOT NULL,
    require_signed_assertion  BOOLEAN NOT NULL,
    clock_skew_seconds        INTEGER NOT NULL,
    name_id_format            TEXT,
    force_authn               BOOLEAN NOT NULL,
    jit                       BOOLEAN NOT NULL,
    updated_at                TIMESTAMP NOT NULL
);

CREATE TABLE idp_certificates (
    workspace_id  TEXT NOT NULL REFERENCES idp_connections (workspace_id) ON DELETE CASCADE,
    fingerprint   TEXT NOT NULL,
    subject       TEXT NOT NULL,
    not_after     TIMESTAMP NOT NULL,
    der           BLOB NOT NULL,
    PRIMARY KEY (workspace_id, fingerprint)
);

-- The service provider's own keys per workspace, made on first need: one signs AuthnRequests,
-- the other is what IdPs encrypt assertions to. Stored as PKCS#8 PEM; the database is the secret.
CREATE TABLE sp_keys (
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    purpose          TEXT NOT NULL,
    private_key_pem  TEXT NOT NULL,
    certificate_der  BLOB NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (workspace_id, purpose)
);

-- AuthnRequests this service issued. A response's InResponseTo must name one, unused and
-- unexpired; browser_hash binds it to the browser that started the login (SHA-256 of the value
-- of its request cookie); relay_path is where to go afterwards, kept here rather than trusted
-- from the IdP.
CREATE TABLE saml_requests (
    id            TEXT PRIMARY KEY NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    browser_hash  BLOB NOT NULL,
    relay_path    TEXT NOT NULL,
    expires_at    TIMESTAMP NOT NULL,
    used_at       TIMESTAMP
);
CREATE INDEX saml_requests_expiry ON saml_requests (expires_at);
