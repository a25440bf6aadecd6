//! The one integration-test binary: every module tests idgate through its real interfaces (HTTP
//! and the `idgate` binary), on SQLite and, when configured, PostgreSQL.

mod helpers;

mod access;
mod audit;
mod auth;
mod browser;
mod cli;
mod config;
mod console;
mod faults;
mod health;
mod hostile;
mod idp;
mod layers;
mod logging;
mod saml;
mod saml_idp;
mod scim;
mod sso;
mod tokens;
mod workspaces;
