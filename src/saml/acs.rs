//! The assertion consumer: a checked response (see [`super::response`]) becomes a session. In one
//! transaction: the request it answers is used up (and must belong to this browser), the
//! assertion enters the replay cache, the person's membership is found or made just in time,
//! the groups the IdP asserts replace those of their last login, and the session is recorded.
//! A refusal rolls all of that back and is audited on its own with its reason.

use std::collections::BTreeSet;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use samael::crypto::CertificateDer;
use serde_json::{Value, json};

use super::SamlError;
use super::connection::{self, Connection};
use super::login::same_origin_path;
use super::response::{self, Expected, Reason, Refusal, Verified};
use super::sp::{self, Endpoints, Purpose};
use super::traces;
use crate::access::attributes::{self, AttributeMapping};
use crate::access::members;
use crate::audit::{self, Actor, AuditContext, Event, Target};
use crate::db::schema::{saml_assertions_seen, saml_requests};
use crate::db::{Conn, StoreError, Tx};
use crate::directory::{self, Member};
use crate::scim::resource::normalize;
use crate::scim::schema::ResourceKind;
use crate::sessions::keys::{KeyRing, Signer};
use crate::sessions::{self, Issued, NewSession};
use crate::workspaces::Workspace;

const GROUPS_MAX: usize = 1000;
/// Refused messages of one kind a workspace's audit log records a minute.
const REFUSALS_AUDITED_PER_MINUTE: i64 = 60;
const GROUP_NAME_MAX: usize = 256;
const EMAIL_MAX: usize = 254;

/// What the browser posted to the ACS.
pub struct Posted {
    pub saml_response: String,
    pub relay_state: Option<String>,
    /// The value of the request cookie set at login, if the browser sent it.
    pub browser_secret: Option<String>,
    /// The address it came from (see [`crate::forwarded`]).
    pub client: Option<String>,
}

/// A login that succeeded: who, the session, and where to send the browser.
pub struct LoggedIn {
    pub email: String,
    pub session: Issued,
    pub relay_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AcsError {
    #[error("the response was refused: {}", .0.reason.code())]
    Refused(Refusal),
    #[error(transparent)]
    Saml(#[from] SamlError),
}

impl From<Refusal> for AcsError {
    fn from(refusal: Refusal) -> Self {
        AcsError::Refused(refusal)
    }
}

impl From<diesel::result::Error> for AcsError {
    fn from(error: diesel::result::Error) -> Self {
        AcsError::Saml(error.into())
    }
}

impl From<StoreError> for AcsError {
    fn from(error: StoreError) -> Self {
        AcsError::Saml(error.into())
    }
}

fn acs_context() -> AuditContext {
    AuditContext {
        actor: Actor::System("saml-acs".to_owned()),
        request_id: None,
    }
}

/// Checks a posted response and, when it passes, logs the person in.
pub fn consume(
    conn: &mut Conn,
    keys: &KeyRing,
    base_url: &str,
    workspace: &Workspace,
    posted: Posted,
    now: NaiveDateTime,
) -> Result<LoggedIn, AcsError> {
    let connection = connection::get(conn, &workspace.id)?.ok_or(SamlError::NotConfigured)?;
    let endpoints = Endpoints::new(base_url, &workspace.slug);
    let verified = verified(conn, &connection, &endpoints, workspace, &posted, now);
    // Kept for the sign-in debugger, from a response whose signature passed.
    let attributes = verified
        .as_ref()
        .map(|verified| verified.attributes.clone())
        .unwrap_or_default();
    let signed = match &verified {
        Ok(_) => true,
        Err(AcsError::Refused(refusal)) => refusal.signature_verified,
        Err(AcsError::Saml(_)) => false,
    };
    let outcome = verified.and_then(|verified| {
        let signer = keys.signing_key(conn, now)?;
        conn.write(|tx| {
            let logged_in = log_in(
                tx,
                &signer,
                base_url,
                &connection,
                workspace,
                &posted,
                &verified,
                now,
            )?;
            let trace = traces::Outcome {
                outcome: traces::SIGNED_IN,
                detail: None,
                email: Some(&logged_in.email),
                attributes: &verified.attributes,
                posted: &posted.saml_response,
                signed: true,
                client: posted.client.as_deref(),
            };
            traces::record(tx, &workspace.id, trace, now)?;
            Ok(logged_in)
        })
    });
    if let Err(AcsError::Refused(refusal)) = &outcome {
        let trace = traces::Outcome {
            outcome: refusal.reason.code(),
            detail: Some(&refusal.detail),
            email: None,
            attributes: &attributes,
            posted: &posted.saml_response,
            signed,
            client: posted.client.as_deref(),
        };
        record_refusal(
            conn,
            workspace,
            &connection,
            refusal,
            "saml.login.refused",
            Some(trace),
        )?;
    }
    outcome
}

fn verified(
    conn: &mut Conn,
    connection: &Connection,
    endpoints: &Endpoints,
    workspace: &Workspace,
    posted: &Posted,
    now: NaiveDateTime,
) -> Result<Verified, AcsError> {
    if connection
        .metadata_valid_until
        .is_some_and(|until| until <= now)
    {
        return Err(Refusal::new(
            Reason::MetadataExpired,
            "the IdP metadata is past its validUntil and no fresh copy could be fetched",
        )
        .into());
    }
    let certificates: Vec<CertificateDer> = connection
        .certificates
        .iter()
        .filter(|c| c.status(now) != "expired")
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect();
    let decryption = sp::key(
        conn,
        &workspace.id,
        &endpoints.entity_id,
        Purpose::Encryption,
    )?;
    let expected = Expected {
        idp_entity_id: &connection.entity_id,
        certificates: &certificates,
        acs_url: &endpoints.acs,
        sp_entity_id: &endpoints.entity_id,
        clock_skew: TimeDelta::seconds(connection.options.clock_skew_seconds.into()),
        require_signed_response: connection.options.require_signed_response,
        require_signed_assertion: connection.options.require_signed_assertion,
        decryption_key: Some(&decryption.private_key),
        now: now.and_utc(),
    };
    Ok(response::validate(&posted.saml_response, &expected)?)
}

#[allow(clippy::too_many_arguments)]
fn log_in(
    tx: &mut Tx<'_>,
    signer: &Signer,
    base_url: &str,
    connection: &Connection,
    workspace: &Workspace,
    posted: &Posted,
    verified: &Verified,
    now: NaiveDateTime,
) -> Result<LoggedIn, AcsError> {
    let relay_path = match &verified.in_response_to {
        Some(request_id) => use_request(tx, workspace, request_id, posted, now)?,
        None if connection.options.allow_idp_initiated => {
            same_origin_path(posted.relay_state.as_deref())
        }
        None => {
            return Err(Refusal::new(
                Reason::Unsolicited,
                "IdP-initiated login is turned off for this connection",
            )
            .into());
        }
    };
    remember_message(
        tx,
        &connection.entity_id,
        &verified.assertion_id,
        verified.valid_until.naive_utc(),
        now,
    )?;

    let mapping = attributes::get(tx, &workspace.id)?;
    let email = email_of(verified, &mapping)?;
    let context = AuditContext {
        actor: Actor::Idp(connection.entity_id.clone()),
        request_id: None,
    };
    let member = match directory::find(tx, &workspace.id, &email)? {
        Some(member) if !member.active => {
            return Err(Refusal::new(
                Reason::Deactivated,
                format!("{email} is deactivated in this workspace"),
            )
            .into());
        }
        Some(member) => member,
        None if connection.options.jit => {
            provision(tx, workspace, &email, verified, &mapping, &context)?
        }
        None => {
            return Err(Refusal::new(
                Reason::NotProvisioned,
                format!("{email} is not a member and just-in-time provisioning is off"),
            )
            .into());
        }
    };
    if let Some(attribute) = &mapping.groups {
        replace_groups(
            tx,
            workspace,
            &member,
            asserted_groups(verified, attribute),
            &context,
        )?;
    }
    let session = sessions::create(
        tx,
        signer,
        base_url,
        NewSession {
            email: &email,
            workspace,
            member_id: &member.id,
            name_id: &verified.name_id,
            session_index: verified.session_index.as_deref(),
            idp_expires_at: verified.session_not_on_or_after.map(|t| t.naive_utc()),
        },
        now,
    )?;
    audit::record_leaving_decisions_alone(
        tx,
        &context,
        Event {
            workspace_id: Some(&workspace.id),
            action: "saml.login",
            target: Target {
                kind: "user",
                id: &member.id,
            },
            details: json!({
                "email": email,
                "initiated_by": if verified.in_response_to.is_some() { "sp" } else { "idp" },
                "session_expires_at": crate::time::rfc3339(&session.expires_at),
            }),
        },
    )?;
    Ok(LoggedIn {
        email,
        session,
        relay_path,
    })
}

/// Uses up the AuthnRequest a response answers: it must be ours, for this workspace, unexpired,
/// unused, and started by this browser. Returns the path the login started from.
fn use_request(
    tx: &mut Tx<'_>,
    workspace: &Workspace,
    request_id: &str,
    posted: &Posted,
    now: NaiveDateTime,
) -> Result<String, AcsError> {
    type Row = (Vec<u8>, String, NaiveDateTime, Option<NaiveDateTime>);
    let (browser_hash, relay_path, expires_at, used_at): Row = saml_requests::table
        .find(request_id)
        .filter(saml_requests::workspace_id.eq(&workspace.id))
        .select((
            saml_requests::browser_hash,
            saml_requests::relay_path,
            saml_requests::expires_at,
            saml_requests::used_at,
        ))
        .first(tx.conn())
        .optional()?
        .ok_or_else(|| {
            Refusal::new(
                Reason::InResponseTo,
                "InResponseTo names no request of this workspace",
            )
        })?;
    if used_at.is_some() {
        return Err(Refusal::new(Reason::RequestReused, "the request was already answered").into());
    }
    if expires_at <= now {
        return Err(Refusal::new(Reason::Expired, "the request has expired").into());
    }
    let presented = posted
        .browser_secret
        .as_deref()
        .map(|secret| crate::secrets::hash(secret).to_vec());
    if presented.as_deref() != Some(browser_hash.as_slice()) {
        return Err(Refusal::new(
            Reason::BrowserMismatch,
            "the response reached a browser other than the one that started the login",
        )
        .into());
    }
    let used = diesel::update(
        saml_requests::table
            .find(request_id)
            .filter(saml_requests::used_at.is_null()),
    )
    .set(saml_requests::used_at.eq(now))
    .execute(tx.conn())?;
    if used != 1 {
        return Err(Refusal::new(Reason::RequestReused, "the request was already answered").into());
    }
    Ok(relay_path)
}

/// The replay cache: a signed message of an IdP (an assertion, a LogoutRequest) is accepted once,
/// by any replica, until `expires_at`, after which it is refused as too old anyway.
pub(super) fn remember_message(
    tx: &mut Tx<'_>,
    idp_entity_id: &str,
    message_id: &str,
    expires_at: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<(), AcsError> {
    diesel::delete(saml_assertions_seen::table.filter(saml_assertions_seen::expires_at.lt(now)))
        .execute(tx.conn())?;
    let inserted = diesel::insert_into(saml_assertions_seen::table)
        .values((
            saml_assertions_seen::idp_entity_id.eq(idp_entity_id),
            saml_assertions_seen::assertion_id.eq(message_id),
            saml_assertions_seen::expires_at.eq(expires_at),
        ))
        .execute(tx.conn())
        .map_err(StoreError::from);
    match inserted {
        Ok(_) => Ok(()),
        Err(error) if error.is_unique_violation() => Err(Refusal::new(
            Reason::Replay,
            format!("message {message_id} was already used"),
        )
        .into()),
        Err(error) => Err(error.into()),
    }
}

fn first_value<'a>(verified: &'a Verified, attribute: &str) -> Option<&'a str> {
    verified
        .attributes
        .get(attribute)
        .and_then(|values| values.iter().map(|v| v.trim()).find(|v| !v.is_empty()))
}

/// The person's email: the mapped attribute, else a NameID that is an address.
fn email_of(verified: &Verified, mapping: &AttributeMapping) -> Result<String, Refusal> {
    let raw = first_value(verified, &mapping.email)
        .or_else(|| {
            verified
                .name_id
                .contains('@')
                .then_some(verified.name_id.as_str())
        })
        .ok_or_else(|| {
            Refusal::new(
                Reason::NoSubject,
                format!(
                    "no {:?} attribute and the NameID is not an email",
                    mapping.email
                ),
            )
        })?;
    let email = sessions::normalise_email(raw);
    if !is_address(&email) {
        return Err(Refusal::new(
            Reason::InvalidEmail,
            "the email asserted is not an address",
        ));
    }
    Ok(email)
}

/// Whether `email` is an address as IdPs send them: a dot-atom local part (RFC 5322, letters of
/// any script as RFC 6531 allows), `@`, and a domain of at least two labels of letters, digits
/// and hyphens. Quoted local parts and address literals are refused: no IdP sends them for a
/// person, and they are where markup and spoofing hide.
fn is_address(email: &str) -> bool {
    const LOCAL_SYMBOLS: &str = "!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.chars().count())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_alphanumeric() || LOCAL_SYMBOLS.contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.chars().count())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    email.len() <= EMAIL_MAX && local_ok && domain_ok
}

/// Just-in-time provisioning: a member with the IdP's name for them and no direct role; their
/// roles come from the group mappings.
fn provision(
    tx: &mut Tx<'_>,
    workspace: &Workspace,
    email: &str,
    verified: &Verified,
    mapping: &AttributeMapping,
    context: &AuditContext,
) -> Result<Member, AcsError> {
    let mut name = serde_json::Map::new();
    for (field, attribute) in [
        ("givenName", &mapping.first_name),
        ("familyName", &mapping.last_name),
    ] {
        if let Some(value) = first_value(verified, attribute) {
            name.insert(field.to_owned(), Value::String(value.to_owned()));
        }
    }
    let mut user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "emails": [{ "value": email, "type": "work", "primary": true }],
        "active": true,
    });
    if !name.is_empty() {
        user["name"] = Value::Object(name);
    }
    let document = normalize(ResourceKind::User, &user)
        .map_err(|e| Refusal::new(Reason::NoSubject, format!("cannot provision {email}: {e}")))?;
    let stored =
        directory::users::insert(tx, &workspace.id, document, context, "saml.member.created")
            .map_err(|e| match e {
                crate::scim::error::ScimError::Store(error) => AcsError::from(error),
                other => Refusal::new(
                    Reason::NoSubject,
                    format!("cannot provision {email}: {other}"),
                )
                .into(),
            })?;
    Ok(Member {
        id: stored.id,
        user_name: stored.user_name,
        active: stored.active,
    })
}

fn asserted_groups(verified: &Verified, attribute: &str) -> BTreeSet<String> {
    verified
        .attributes
        .get(attribute)
        .into_iter()
        .flatten()
        .map(|g| g.trim())
        .filter(|g| !g.is_empty() && g.len() <= GROUP_NAME_MAX)
        .take(GROUPS_MAX)
        .map(str::to_owned)
        .collect()
}

/// The IdP is the authority on groups at each login: what it asserts replaces what it asserted
/// last time. A change is an access change, so it is audited and raises the access version.
fn replace_groups(
    tx: &mut Tx<'_>,
    workspace: &Workspace,
    member: &Member,
    asserted: BTreeSet<String>,
    context: &AuditContext,
) -> Result<(), AcsError> {
    let before = directory::asserted_groups(tx, &member.id)?;
    if before == asserted {
        return Ok(());
    }
    let had_owner = members::has_owner(tx, &workspace.id)?;
    let mut kept = BTreeSet::new();
    directory::set_asserted_groups(tx, &member.id, &asserted)?;
    // The last Owner keeps the group that makes them one until the workspace has another, as an
    // admin could not take it away either.
    if had_owner && !members::has_owner(tx, &workspace.id)? {
        for group in before.difference(&asserted) {
            if members::maps_to_owner(tx, &workspace.id, group)? {
                kept.insert(group.clone());
            }
        }
        directory::set_asserted_groups(tx, &member.id, &asserted.union(&kept).cloned().collect())?;
    }
    let removed: Vec<&String> = before
        .difference(&asserted)
        .filter(|g| !kept.contains(*g))
        .collect();
    audit::record(
        tx,
        context,
        Event {
            workspace_id: Some(&workspace.id),
            action: "saml.member.groups_changed",
            target: Target {
                kind: "user",
                id: &member.id,
            },
            details: json!({
                "added": asserted.difference(&before).collect::<Vec<_>>(),
                "removed": removed,
                "kept_for_the_last_owner": kept,
            }),
        },
    )?;
    Ok(())
}

/// Audits a refused SAML message as `action`, with the reason code and its detail, and keeps the
/// trace of a refused response when there is one.
pub(crate) fn record_refusal(
    conn: &mut Conn,
    workspace: &Workspace,
    connection: &Connection,
    refusal: &Refusal,
    action: &str,
    trace: Option<traces::Outcome<'_>>,
) -> Result<(), AcsError> {
    tracing::warn!(
        workspace = workspace.slug.as_str(),
        action,
        reason = refusal.reason.code(),
        "SAML message refused"
    );
    crate::metrics::metrics()
        .saml_refusals
        .with_label_values(&[refusal.reason.code()])
        .inc();
    // Anyone may post to the ACS: past a rate, refusals are logged but no longer audited, so a
    // flood cannot grow the audit log without bound.
    let minute_ago = crate::time::now() - TimeDelta::minutes(1);
    if audit::at_least_since(
        conn,
        &workspace.id,
        action,
        REFUSALS_AUDITED_PER_MINUTE,
        minute_ago,
    )? {
        return Ok(());
    }
    conn.write(|tx| {
        audit::record_leaving_decisions_alone(
            tx,
            &acs_context(),
            Event {
                workspace_id: Some(&workspace.id),
                action,
                target: Target {
                    kind: "idp_connection",
                    id: &connection.entity_id,
                },
                details: json!({ "reason": refusal.reason.code(), "detail": refusal.detail }),
            },
        )?;
        match trace {
            Some(trace) => traces::record(tx, &workspace.id, trace, crate::time::now()),
            None => Ok(()),
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_a_dot_atom_at_a_domain_of_two_labels_or_more() {
        for address in [
            "ada@example.com",
            "o'neil+x@a.b.co.uk",
            "zoë@exämple.de",
            "a@b-c.io",
        ] {
            assert!(is_address(address), "{address}");
        }
        for not_address in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            ".ada@example.com",
            "ada..l@example.com",
            "ada l@example.com",
            "<b>@example.com",
            "\"ada\"@example.com",
            "ada@[192.0.2.1]",
            "ada@example-.com",
            "ada@exa_mple.com",
        ] {
            assert!(!is_address(not_address), "{not_address}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(!is_address(&long_local));
    }
}
