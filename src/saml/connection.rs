//! The workspace's IdP connection: where to send people (SSO and SLO URLs), whom to trust (the
//! IdP's entity ID and signing certificates), and the options of the contract.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::SamlError;
use super::certificates::Certificate;
use super::metadata::{self, IdpMetadata};
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::{idp_certificates, idp_connections};
use crate::db::{Conn, DbConnection, Tx};
use crate::outbound::{self, InternalAllowList};

/// The largest clock skew an admin may allow between idgate and the IdP.
const MAX_CLOCK_SKEW_SECONDS: i32 = 600;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Options {
    /// Accept responses no AuthnRequest of ours asked for.
    pub allow_idp_initiated: bool,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    pub clock_skew_seconds: i32,
    pub name_id_format: Option<String>,
    pub force_authn: bool,
    /// Give a person the IdP vouches for a membership at first login; off: SCIM members only.
    pub jit: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_idp_initiated: true,
            require_signed_response: false,
            require_signed_assertion: false,
            clock_skew_seconds: 120,
            name_id_format: None,
            force_authn: false,
            jit: true,
        }
    }
}

/// Options to change; what is absent keeps its value. An empty `name_id_format` removes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionChanges {
    pub allow_idp_initiated: Option<bool>,
    pub require_signed_response: Option<bool>,
    pub require_signed_assertion: Option<bool>,
    pub clock_skew_seconds: Option<i32>,
    pub name_id_format: Option<String>,
    pub force_authn: Option<bool>,
    pub jit: Option<bool>,
}

impl OptionChanges {
    fn apply(self, options: &mut Options) -> Result<(), SamlError> {
        if let Some(skew) = self.clock_skew_seconds {
            if !(0..=MAX_CLOCK_SKEW_SECONDS).contains(&skew) {
                return Err(SamlError::Invalid(format!(
                    "clock_skew_seconds must be from 0 to {MAX_CLOCK_SKEW_SECONDS}"
                )));
            }
            options.clock_skew_seconds = skew;
        }
        if let Some(format) = self.name_id_format {
            let format = format.trim();
            if format.len() > 256 || format.chars().any(char::is_control) {
                return Err(SamlError::Invalid(
                    "name_id_format is a URI of at most 256 characters".to_owned(),
                ));
            }
            options.name_id_format = (!format.is_empty()).then(|| format.to_owned());
        }
        let flags = [
            (self.allow_idp_initiated, &mut options.allow_idp_initiated),
            (
                self.require_signed_response,
                &mut options.require_signed_response,
            ),
            (
                self.require_signed_assertion,
                &mut options.require_signed_assertion,
            ),
            (self.force_authn, &mut options.force_authn),
            (self.jit, &mut options.jit),
        ];
        for (change, flag) in flags {
            if let Some(value) = change {
                *flag = value;
            }
        }
        Ok(())
    }
}

/// Where the IdP's identity comes from.
pub enum Source {
    /// Its metadata document, and the URL it was fetched from, if it was.
    Metadata { xml: String, url: Option<String> },
    Manual {
        entity_id: String,
        sso_url: String,
        slo_url: Option<String>,
        certificates: Vec<Certificate>,
    },
}

impl Source {
    /// An IdP given by hand: its entity ID, sign-in URL, and certificates in PEM blocks.
    pub fn manual(
        entity_id: String,
        sso_url: String,
        slo_url: Option<String>,
        pems: &[String],
    ) -> Result<Source, SamlError> {
        let mut certificates = Vec::new();
        for pem in pems {
            certificates.extend(Certificate::from_pem(pem).map_err(SamlError::Invalid)?);
        }
        Ok(Source::Manual {
            entity_id,
            sso_url,
            slo_url,
            certificates,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub entity_id: String,
    pub sso_url: String,
    pub slo_url: Option<String>,
    pub metadata_url: Option<String>,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub metadata_valid_until: Option<NaiveDateTime>,
    pub options: Options,
    pub certificates: Vec<Certificate>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: NaiveDateTime,
}

type ConnectionRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
    bool,
    bool,
    bool,
    i32,
    Option<String>,
    bool,
    bool,
    NaiveDateTime,
);

pub fn get(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Option<Connection>> {
    let row: Option<ConnectionRow> = idp_connections::table
        .find(workspace_id)
        .select((
            idp_connections::entity_id,
            idp_connections::sso_url,
            idp_connections::slo_url,
            idp_connections::metadata_url,
            idp_connections::metadata_valid_until,
            idp_connections::allow_idp_initiated,
            idp_connections::require_signed_response,
            idp_connections::require_signed_assertion,
            idp_connections::clock_skew_seconds,
            idp_connections::name_id_format,
            idp_connections::force_authn,
            idp_connections::jit,
            idp_connections::updated_at,
        ))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let certificates = idp_certificates::table
        .filter(idp_certificates::workspace_id.eq(workspace_id))
        .order(idp_certificates::not_after.asc())
        .select(idp_certificates::der)
        .load::<Vec<u8>>(conn)?
        .iter()
        .map(|der| {
            Certificate::from_der(der)
                .map_err(|e| diesel::result::Error::DeserializationError(e.into()))
        })
        .collect::<QueryResult<_>>()?;
    let (
        entity_id,
        sso_url,
        slo_url,
        metadata_url,
        metadata_valid_until,
        allow_idp_initiated,
        require_signed_response,
        require_signed_assertion,
        clock_skew_seconds,
        name_id_format,
        force_authn,
        jit,
        updated_at,
    ) = row;
    Ok(Some(Connection {
        entity_id,
        sso_url,
        slo_url,
        metadata_url,
        metadata_valid_until,
        options: Options {
            allow_idp_initiated,
            require_signed_response,
            require_signed_assertion,
            clock_skew_seconds,
            name_id_format,
            force_authn,
            jit,
        },
        certificates,
        updated_at,
    }))
}

fn check_url(field: &str, raw: &str) -> Result<String, SamlError> {
    match url::Url::parse(raw.trim()) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {
            Ok(url.to_string())
        }
        _ => Err(SamlError::Invalid(format!(
            "{field} {raw:?} must be an http(s) URL"
        ))),
    }
}

/// The IdP side of a connection from its source, checked.
fn identity(source: Source) -> Result<(IdpMetadata, Option<String>), SamlError> {
    match source {
        Source::Metadata { xml, url } => Ok((metadata::parse(&xml)?, url)),
        Source::Manual {
            entity_id,
            sso_url,
            slo_url,
            certificates,
        } => {
            let entity_id = entity_id.trim().to_owned();
            if entity_id.is_empty() || entity_id.len() > 1024 {
                return Err(SamlError::Invalid(
                    "entity_id must be 1 to 1024 characters".to_owned(),
                ));
            }
            if certificates.is_empty() {
                return Err(SamlError::Invalid(
                    "a connection needs at least one IdP signing certificate".to_owned(),
                ));
            }
            let identity = IdpMetadata {
                entity_id,
                sso_url: check_url("sso_url", &sso_url)?,
                slo_url: slo_url
                    .as_deref()
                    .map(|u| check_url("slo_url", u))
                    .transpose()?,
                certificates,
                valid_until: None,
            };
            Ok((identity, None))
        }
    }
}

fn summary(connection: &Connection) -> serde_json::Value {
    let fingerprints: Vec<&str> = connection
        .certificates
        .iter()
        .map(|c| c.fingerprint.as_str())
        .collect();
    json!({
        "entity_id": connection.entity_id,
        "sso_url": connection.sso_url,
        "slo_url": connection.slo_url,
        "metadata_url": connection.metadata_url,
        "certificates": fingerprints,
        "options": connection.options,
    })
}

/// Sets the connection's IdP (when `source` is given) and options. The first time, a source is
/// required; after that, options can change alone.
pub fn set(
    conn: &mut Conn,
    workspace_id: &str,
    source: Option<Source>,
    changes: OptionChanges,
    context: &AuditContext,
) -> Result<Connection, SamlError> {
    let identity = source.map(identity).transpose()?;
    conn.write(|tx| {
        let before = get(tx, workspace_id)?;
        let mut after = match (&before, identity) {
            (_, Some((idp, metadata_url))) => Connection {
                entity_id: idp.entity_id,
                sso_url: idp.sso_url,
                slo_url: idp.slo_url,
                metadata_url,
                metadata_valid_until: idp.valid_until,
                options: before
                    .as_ref()
                    .map(|c| c.options.clone())
                    .unwrap_or_default(),
                certificates: idp.certificates,
                updated_at: crate::time::now(),
            },
            (Some(current), None) => current.clone(),
            (None, None) => return Err(SamlError::NotConfigured),
        };
        changes.apply(&mut after.options)?;
        if before.as_ref().is_some_and(|b| {
            summary(b) == summary(&after) && b.metadata_valid_until == after.metadata_valid_until
        }) {
            return Ok(before.expect("checked above"));
        }
        after.updated_at = crate::time::now();
        write(tx, workspace_id, &after)?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "saml.connection.set",
                target: Target {
                    kind: "idp_connection",
                    id: &after.entity_id,
                },
                details: json!({ "before": before.as_ref().map(summary), "after": summary(&after) }),
            },
        )?;
        Ok(after)
    })
}

fn write(tx: &mut Tx<'_>, workspace_id: &str, connection: &Connection) -> QueryResult<()> {
    diesel::delete(idp_connections::table.find(workspace_id)).execute(tx.conn())?;
    let options = &connection.options;
    diesel::insert_into(idp_connections::table)
        .values((
            idp_connections::workspace_id.eq(workspace_id),
            idp_connections::entity_id.eq(&connection.entity_id),
            idp_connections::sso_url.eq(&connection.sso_url),
            idp_connections::slo_url.eq(&connection.slo_url),
            idp_connections::metadata_url.eq(&connection.metadata_url),
            idp_connections::metadata_valid_until.eq(connection.metadata_valid_until),
            idp_connections::allow_idp_initiated.eq(options.allow_idp_initiated),
            idp_connections::require_signed_response.eq(options.require_signed_response),
            idp_connections::require_signed_assertion.eq(options.require_signed_assertion),
            idp_connections::clock_skew_seconds.eq(options.clock_skew_seconds),
            idp_connections::name_id_format.eq(&options.name_id_format),
            idp_connections::force_authn.eq(options.force_authn),
            idp_connections::jit.eq(options.jit),
            idp_connections::updated_at.eq(connection.updated_at),
        ))
        .execute(tx.conn())?;
    for certificate in &connection.certificates {
        diesel::insert_into(idp_certificates::table)
            .values((
                idp_certificates::workspace_id.eq(workspace_id),
                idp_certificates::fingerprint.eq(&certificate.fingerprint),
                idp_certificates::subject.eq(&certificate.subject),
                idp_certificates::not_after.eq(certificate.not_after),
                idp_certificates::der.eq(&certificate.der),
            ))
            .execute(tx.conn())?;
    }
    Ok(())
}

/// Fetches metadata from an http(s) URL, at most [`metadata::MAX_METADATA_BYTES`], in 10 seconds,
/// from a public address or one the operator allowed ([`crate::outbound`]).
pub async fn fetch_metadata(allowed: &InternalAllowList, url: &str) -> Result<String, SamlError> {
    let body = outbound::fetch(allowed, url, metadata::MAX_METADATA_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|error| SamlError::Fetch(error.to_string()))?;
    let xml = String::from_utf8(body).map_err(|_| SamlError::Fetch(format!("{url}: not UTF-8")))?;
    // What the URL served is not repeated back: it may be a page of an internal service.
    metadata::parse(&xml).map_err(|_| {
        SamlError::Fetch(format!(
            "{url} did not serve an IdP's SAML metadata (an md:EntityDescriptor with an IDPSSODescriptor and a signing certificate)"
        ))
    })?;
    Ok(xml)
}
