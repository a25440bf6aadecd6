DROP TABLE saml_sign_in_traces;
