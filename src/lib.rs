//! idgate: a SCIM 2.0 provisioning server and SAML 2.0 SSO gateway for multi-workspace products.
//!
//! Organised by capability, in one dependency order (kept by `tests/api/layers.rs`); a module
//! names only those listed before it here:
//!
//! - leaves: `time`, `secrets`, `permissions`, `csv_export`, `outbound`, `forwarded`, `metrics`, `db`;
//! - foundations: `scim` (SCIM as data), `audit`, `config`, `telemetry`, `error`;
//! - rooms: `workspaces`, `directory`, `tokens`, `sessions`, `links`, `access`, `saml`;
//! - the gate: `auth` (credentials, `Authorized<needs::X>`, rate limits);
//! - the surface: `api` (handlers), `console` (the admin web pages), `replicas`, `limits`, `app`, `cli`.

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod csv_export;
pub mod db;
pub mod directory;
pub mod error;
pub mod forwarded;
pub mod limits;
pub mod links;
pub mod metrics;
pub mod outbound;
pub mod permissions;
pub mod replicas;
pub mod saml;
pub mod scim;
pub mod secrets;
pub mod sessions;
pub mod telemetry;
pub mod time;
pub mod tokens;
pub mod workspaces;
