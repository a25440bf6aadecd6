//! Single logout over the HTTP-Redirect binding. SP-initiated: ending a session also gives the URL
//! that tells the IdP (a signed LogoutRequest naming the session's NameID and SessionIndex).
//! IdP-initiated: a LogoutRequest whose signature verifies over the raw query ends the sessions it
//! names in this workspace, and is answered with a signed LogoutResponse.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::json;

use super::SamlError;
use super::acs::AcsError;
use super::binding;
use super::connection::{self, Connection};
use super::response::{
    ASSERTION, MAX_ASSERTION_AGE, PROTOCOL, Reason, Refusal, SUCCESS, child, children, is,
    parse_strict,
};
use super::sp::{self, Endpoints, Purpose};
use super::xml_escape;
use crate::audit::{self, Actor, AuditContext, Event, Target};
use crate::db::Conn;
use crate::sessions;
use crate::workspaces::Workspace;

fn new_id() -> String {
    format!("_{}", uuid::Uuid::new_v4().simple())
}

fn instant(now: NaiveDateTime) -> String {
    crate::time::rfc3339(&now)
}

/// The URL of the IdP's single logout for an ended session, when the connection has one.
pub fn request_url(
    conn: &mut Conn,
    workspace: &Workspace,
    endpoints: &Endpoints,
    session_id: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, SamlError> {
    let Some(connection) = connection::get(conn, &workspace.id)? else {
        return Ok(None);
    };
    let Some(slo_url) = &connection.slo_url else {
        return Ok(None);
    };
    let (name_id, session_index) = sessions::idp_identity(conn, session_id)?;
    let session_index = session_index
        .map(|index| {
            format!(
                "<samlp:SessionIndex>{}</samlp:SessionIndex>",
                xml_escape(&index)
            )
        })
        .unwrap_or_default();
    let xml = format!(
        r#"<samlp:LogoutRequest xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID>{name_id}</saml:NameID>{session_index}</samlp:LogoutRequest>"#,
        id = new_id(),
        issued = instant(now),
        destination = xml_escape(slo_url),
        issuer = xml_escape(&endpoints.entity_id),
        name_id = xml_escape(&name_id),
    );
    let key = sp::key(conn, &workspace.id, &endpoints.entity_id, Purpose::Signing)?;
    binding::signed_redirect(slo_url, "SAMLRequest", &xml, None, &key.private_key).map(Some)
}

/// What an IdP's LogoutRequest asks: whose sessions to end.
struct LogoutRequest {
    id: String,
    /// Until when the request would still be accepted, so until when its ID is remembered.
    fresh_until: NaiveDateTime,
    name_id: String,
    session_indexes: Vec<String>,
}

fn read_request(
    xml: &str,
    connection: &Connection,
    endpoints: &Endpoints,
    now: NaiveDateTime,
) -> Result<LogoutRequest, Refusal> {
    let document = parse_strict(xml)?;
    let root = document
        .get_root_element()
        .filter(|root| is(root, PROTOCOL, "LogoutRequest"))
        .ok_or_else(|| Refusal::new(Reason::NotAResponse, "not a LogoutRequest"))?;
    let issuer = child(&root, ASSERTION, "Issuer").map(|i| i.get_content());
    if issuer.as_deref().map(str::trim) != Some(connection.entity_id.as_str()) {
        return Err(Refusal::new(Reason::Issuer, "the LogoutRequest's Issuer"));
    }
    if let Some(destination) = root.get_property("Destination")
        && destination != endpoints.slo
    {
        return Err(Refusal::new(
            Reason::Destination,
            "the LogoutRequest's Destination",
        ));
    }
    if let Some(until) = root.get_property("NotOnOrAfter") {
        let until = DateTime::parse_from_rfc3339(&until)
            .map_err(|_| Refusal::new(Reason::Malformed, "NotOnOrAfter is not a time"))?;
        if until.with_timezone(&Utc).naive_utc() <= now {
            return Err(Refusal::new(
                Reason::Expired,
                "the LogoutRequest has expired",
            ));
        }
    }
    // Checked like an assertion's: not from the future, not older than an assertion may be, and
    // (by the caller) used once.
    let id = root
        .get_property("ID")
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| Refusal::new(Reason::Malformed, "the LogoutRequest has no ID"))?;
    let issued = root
        .get_property("IssueInstant")
        .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
        .map(|at| at.with_timezone(&Utc).naive_utc())
        .ok_or_else(|| Refusal::new(Reason::Malformed, "IssueInstant is missing or not a time"))?;
    let skew = TimeDelta::seconds(connection.options.clock_skew_seconds.into());
    if issued > now + skew {
        return Err(Refusal::new(
            Reason::IssuedInFuture,
            "the LogoutRequest is issued in the future",
        ));
    }
    let fresh_until = issued + MAX_ASSERTION_AGE + skew;
    if fresh_until < now {
        return Err(Refusal::new(
            Reason::Expired,
            "the LogoutRequest was issued too long ago",
        ));
    }
    let name_id = child(&root, ASSERTION, "NameID")
        .map(|n| n.get_content().trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Refusal::new(Reason::NoSubject, "no NameID"))?;
    Ok(LogoutRequest {
        id,
        fresh_until,
        name_id,
        session_indexes: children(&root, PROTOCOL, "SessionIndex")
            .iter()
            .map(|s| s.get_content().trim().to_owned())
            .collect(),
    })
}

/// Handles an IdP's LogoutRequest (the raw query of `GET /saml/{ws}/slo`). Returns where to send
/// the browser: the IdP's SLO URL with a signed LogoutResponse, or None when it has none.
pub fn handle_request(
    conn: &mut Conn,
    workspace: &Workspace,
    endpoints: &Endpoints,
    raw_query: &str,
    now: NaiveDateTime,
) -> Result<Option<String>, AcsError> {
    let connection = connection::get(conn, &workspace.id)?.ok_or(SamlError::NotConfigured)?;
    let certificates: Vec<openssl::x509::X509> = connection
        .certificates
        .iter()
        .filter(|c| c.status(now) != "expired")
        .filter_map(|c| openssl::x509::X509::from_der(&c.der).ok())
        .collect();
    let checked = binding::receive(raw_query, "SAMLRequest", &certificates).and_then(|received| {
        let request = read_request(&received.xml, &connection, endpoints, now)?;
        Ok((received, request))
    });
    let (received, request) = match checked {
        Ok(checked) => checked,
        Err(refusal) => {
            super::acs::record_refusal(
                conn,
                workspace,
                &connection,
                &refusal,
                "saml.logout.refused",
                None,
            )?;
            return Err(refusal.into());
        }
    };
    let ended = conn.write(|tx| {
        super::acs::remember_message(
            tx,
            &connection.entity_id,
            &request.id,
            request.fresh_until,
            now,
        )?;
        let ended = sessions::end_for_idp(
            tx,
            &workspace.id,
            &request.name_id,
            &request.session_indexes,
            now,
        )?;
        audit::record_leaving_decisions_alone(
            tx,
            &AuditContext {
                actor: Actor::Idp(connection.entity_id.clone()),
                request_id: None,
            },
            Event {
                workspace_id: Some(&workspace.id),
                action: "saml.logout",
                target: Target {
                    kind: "name_id",
                    id: &request.name_id,
                },
                details: json!({ "sessions_ended": ended }),
            },
        )?;
        Ok::<_, AcsError>(ended)
    });
    let ended = match ended {
        Err(AcsError::Refused(replayed)) => {
            super::acs::record_refusal(
                conn,
                workspace,
                &connection,
                &replayed,
                "saml.logout.refused",
                None,
            )?;
            return Err(AcsError::Refused(replayed));
        }
        ended => ended?,
    };
    tracing::info!(
        workspace = workspace.slug.as_str(),
        ended,
        "IdP-initiated logout"
    );
    let Some(slo_url) = &connection.slo_url else {
        return Ok(None);
    };
    let xml = format!(
        r#"<samlp:LogoutResponse xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}" InResponseTo="{in_response_to}"><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status></samlp:LogoutResponse>"#,
        id = new_id(),
        issued = instant(now),
        destination = xml_escape(slo_url),
        in_response_to = xml_escape(&request.id),
        issuer = xml_escape(&endpoints.entity_id),
    );
    let key = sp::key(conn, &workspace.id, &endpoints.entity_id, Purpose::Signing)?;
    let url = binding::signed_redirect(
        slo_url,
        "SAMLResponse",
        &xml,
        received.relay_state.as_deref(),
        &key.private_key,
    )?;
    Ok(Some(url))
}
