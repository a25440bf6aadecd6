DROP INDEX saml_sign_in_traces_kind;
ALTER TABLE saml_sign_in_traces DROP COLUMN client;
ALTER TABLE saml_sign_in_traces DROP COLUMN signed;
