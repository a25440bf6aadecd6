DROP TABLE saml_requests;
DROP TABLE sp_keys;
DROP TABLE idp_certificates;
DROP TABLE idp_connections;
