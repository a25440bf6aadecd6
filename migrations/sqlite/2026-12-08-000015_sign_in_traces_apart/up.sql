-- Traces of responses whose signature checked out are kept apart from those of anything else
-- posted to the ACS, so that garbage from anyone never pushes a real sign-in out of the
-- debugger; the client address caps how many of the latter one sender leaves
-- (src/saml/traces.rs).
ALTER TABLE saml_sign_in_traces ADD COLUMN signed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE saml_sign_in_traces ADD COLUMN client TEXT;
UPDATE saml_sign_in_traces SET signed = TRUE WHERE outcome = 'signed_in';
CREATE INDEX saml_sign_in_traces_kind ON saml_sign_in_traces (workspace_id, signed, id);
