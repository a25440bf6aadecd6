//! SP-initiated login: a signed AuthnRequest sent by the HTTP-Redirect binding. Its ID (160 random
//! bits) is stored once with an expiry and bound to the browser by a cookie; the path to return to
//! stays on the server, and only a same-origin path is ever kept.

use chrono::TimeDelta;
use diesel::prelude::*;

use super::binding;
use super::connection::{self, Connection};
use super::sp::{self, Endpoints, Purpose};
use super::{SamlError, xml_escape};
use crate::db::Conn;
use crate::db::schema::saml_requests;

/// The cookie that binds a pending login to the browser that started it.
pub const REQUEST_COOKIE: &str = "idgate_saml_request";
/// How long a person has to sign in at the IdP.
pub const REQUEST_LIFETIME: TimeDelta = TimeDelta::minutes(10);
const RELAY_PATH_MAX: usize = 2048;

/// Where to send the browser, and the secret its cookie carries.
pub struct Login {
    pub location: String,
    pub browser_secret: String,
}

/// `raw` if it is a path on this site, else `/`: never a scheme, a host (`//evil`), a backslash
/// (read as a slash by browsers) or a control character.
pub fn same_origin_path(raw: Option<&str>) -> String {
    match raw {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.len() <= RELAY_PATH_MAX
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn authn_request(id: &str, endpoints: &Endpoints, connection: &Connection) -> String {
    let options = &connection.options;
    let force = if options.force_authn {
        r#" ForceAuthn="true""#
    } else {
        ""
    };
    let policy = options
        .name_id_format
        .as_deref()
        .map(|format| {
            format!(
                r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#,
                xml_escape(format)
            )
        })
        .unwrap_or_default();
    let issued = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"{force}><saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>"#,
        destination = xml_escape(&connection.sso_url),
        acs = xml_escape(&endpoints.acs),
        issuer = xml_escape(&endpoints.entity_id),
    )
}

/// Stores a new request and builds the redirect to the IdP.
pub fn start(
    conn: &mut Conn,
    workspace_id: &str,
    endpoints: &Endpoints,
    relay_state: Option<&str>,
) -> Result<Login, SamlError> {
    let connection = connection::get(conn, workspace_id)?.ok_or(SamlError::NotConfigured)?;
    let signing = sp::key(conn, workspace_id, &endpoints.entity_id, Purpose::Signing)?;
    let mut random = [0u8; 20];
    openssl::rand::rand_bytes(&mut random)
        .map_err(|e| SamlError::Internal(format!("random bytes: {e}")))?;
    let id: String = std::iter::once("_".to_owned())
        .chain(random.iter().map(|b| format!("{b:02x}")))
        .collect();
    let browser_secret = crate::secrets::random_secret();
    let now = crate::time::now();
    conn.write(|tx| {
        // Requests past their expiry can never be answered: each new one clears them away, so
        // the table holds at most ten minutes of logins.
        diesel::delete(saml_requests::table.filter(saml_requests::expires_at.lt(now)))
            .execute(tx.conn())?;
        diesel::insert_into(saml_requests::table)
            .values((
                saml_requests::id.eq(&id),
                saml_requests::workspace_id.eq(workspace_id),
                saml_requests::browser_hash.eq(crate::secrets::hash(&browser_secret).to_vec()),
                saml_requests::relay_path.eq(same_origin_path(relay_state)),
                saml_requests::expires_at.eq(now + REQUEST_LIFETIME),
            ))
            .execute(tx.conn())
    })?;

    // RelayState carries the request ID: the path to return to stays on the server.
    let location = binding::signed_redirect(
        &connection.sso_url,
        "SAMLRequest",
        &authn_request(&id, endpoints, &connection),
        Some(&id),
        &signing.private_key,
    )?;
    Ok(Login {
        location,
        browser_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_kept() {
        for kept in ["/", "/dashboard", "/sources?tab=prod#top", "/a/b%2Fc"] {
            assert_eq!(same_origin_path(Some(kept)), kept);
        }
        let long = format!("/{}", "a".repeat(RELAY_PATH_MAX));
        for refused in [
            None,
            Some(""),
            Some("https://evil.example/"),
            Some("//evil.example/x"),
            Some("/\\evil.example"),
            Some("javascript:alert(1)"),
            Some("dashboard"),
            Some("/a\nSet-Cookie: x=y"),
            Some(long.as_str()),
        ] {
            assert_eq!(same_origin_path(refused), "/", "{refused:?}");
        }
    }
}
