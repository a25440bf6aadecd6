//! Keeping IdP connections current while the server runs: metadata set from a URL is fetched again
//! every hour, and a copy that cannot be fetched or read leaves the last good one in place; every
//! certificate near or past its expiry is logged as a warning on each round and audited once.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use serde_json::json;

use super::connection::{self, OptionChanges, Source};
use crate::audit::{self, Actor, AuditContext, Event, Target};
use crate::db::schema::idp_connections;
use crate::db::{Store, StoreError};
use crate::outbound::InternalAllowList;
use crate::workspaces::{self, WorkspaceError};

pub const INTERVAL: Duration = Duration::from_secs(3600);

/// What one round did to one workspace's connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched and stored (an unchanged document stores nothing).
    Refreshed,
    /// Kept the last good copy; the reason was logged.
    Kept(String),
}

/// One round over every connection; returns what happened to those with a metadata URL.
pub async fn refresh_all(store: &Store, allowed: &InternalAllowList) -> Vec<(String, Outcome)> {
    let listed = store
        .read(|conn| {
            let connections: Vec<(String, Option<String>)> = idp_connections::table
                .select((idp_connections::workspace_id, idp_connections::metadata_url))
                .load(conn)
                .map_err(StoreError::from)?;
            let slugs: HashMap<String, String> = workspaces::list(conn)?
                .into_iter()
                .map(|workspace| (workspace.id, workspace.slug))
                .collect();
            Ok::<_, WorkspaceError>(
                connections
                    .into_iter()
                    .filter_map(|(id, url)| Some((slugs.get(&id)?.clone(), id, url)))
                    .collect::<Vec<_>>(),
            )
        })
        .await;
    let connections = match listed {
        Ok(connections) => connections,
        Err(error) => {
            tracing::warn!(%error, "cannot list IdP connections to refresh");
            return Vec::new();
        }
    };
    let mut outcomes = Vec::new();
    for (slug, workspace_id, metadata_url) in connections {
        if let Some(url) = metadata_url {
            let outcome = refresh_one(store, allowed, &workspace_id, url).await;
            if let Outcome::Kept(reason) = &outcome {
                tracing::warn!(
                    workspace = slug.as_str(),
                    reason = reason.as_str(),
                    "IdP metadata not refreshed; the last good copy stays"
                );
            }
            outcomes.push((slug.clone(), outcome));
        }
        warn_of_expiring_certificates(store, &workspace_id, &slug).await;
    }
    outcomes
}

fn refresh_context() -> AuditContext {
    AuditContext {
        actor: Actor::System("metadata-refresh".to_owned()),
        request_id: None,
    }
}

async fn refresh_one(
    store: &Store,
    allowed: &InternalAllowList,
    workspace_id: &str,
    url: String,
) -> Outcome {
    let xml = match connection::fetch_metadata(allowed, &url).await {
        Ok(xml) => xml,
        Err(error) => return Outcome::Kept(error.to_string()),
    };
    let workspace_id = workspace_id.to_owned();
    let context = refresh_context();
    let stored = store
        .run(move |conn| {
            let source = Source::Metadata {
                xml,
                url: Some(url),
            };
            connection::set(
                conn,
                &workspace_id,
                Some(source),
                OptionChanges::default(),
                &context,
            )
        })
        .await;
    match stored {
        Ok(_) => Outcome::Refreshed,
        Err(error) => Outcome::Kept(error.to_string()),
    }
}

/// Warns of each certificate near or past its expiry on every round, and records it in the
/// workspace's audit log once per certificate and status (`saml.certificate.expiring`, then
/// `saml.certificate.expired`), so an admin reading the log sees it without the log filling up.
async fn warn_of_expiring_certificates(store: &Store, workspace_id: &str, slug: &str) {
    let workspace_id = workspace_id.to_owned();
    let slug = slug.to_owned();
    let recorded = store
        .run(move |conn| {
            let Some(connection) = connection::get(conn, &workspace_id)? else {
                return Ok(());
            };
            let now = crate::time::now();
            for certificate in &connection.certificates {
                let status = certificate.status(now);
                if status == "valid" {
                    continue;
                }
                tracing::warn!(
                    workspace = slug.as_str(),
                    fingerprint = certificate.fingerprint.as_str(),
                    not_after = %crate::time::rfc3339(&certificate.not_after),
                    status,
                    "an IdP signing certificate is near or past its expiry"
                );
                let action = format!("saml.certificate.{status}");
                if !audit::recorded(conn, &workspace_id, &action, &certificate.fingerprint)? {
                    conn.write(|tx| {
                        audit::record_leaving_decisions_alone(
                            tx,
                            &refresh_context(),
                            Event {
                                workspace_id: Some(&workspace_id),
                                action: &action,
                                target: Target {
                                    kind: "certificate",
                                    id: &certificate.fingerprint,
                                },
                                details: json!({
                                    "subject": certificate.subject,
                                    "not_after": crate::time::rfc3339(&certificate.not_after),
                                }),
                            },
                        )
                    })?;
                }
            }
            Ok::<_, StoreError>(())
        })
        .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "cannot check IdP certificate expiry");
    }
}

/// Runs [`refresh_all`] every [`INTERVAL`] until the server stops, and lets sign-in traces past
/// their week go.
pub async fn run(store: Store, allowed: InternalAllowList) {
    let mut interval = actix_web::rt::time::interval(INTERVAL);
    loop {
        interval.tick().await;
        refresh_all(&store, &allowed).await;
        let now = crate::time::now();
        let purged = store
            .write(move |tx| Ok::<_, StoreError>(super::traces::purge(tx, now)?))
            .await;
        if let Err(error) = purged {
            tracing::warn!(%error, "cannot purge old sign-in traces");
        }
    }
}
