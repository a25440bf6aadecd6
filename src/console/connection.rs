//! The IdP connection: what to paste into the IdP, the IdP's identity (by metadata URL, pasted or
//! uploaded metadata, or by hand), its certificates and options, a test sign-in, and the recent
//! refusals with what they mean.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, Notice, PageError, Saved, Section, Submitted, Visitor, render, see_other};
use crate::auth::session::session_of;
use crate::config::BaseUrl;
use crate::db::Store;
use crate::outbound::InternalAllowList;
use crate::permissions::Scope;
use crate::saml::SamlError;
use crate::saml::connection::{self, Connection, OptionChanges, Source};
use crate::saml::sp::Endpoints;
use crate::saml::traces::{self, Trace};
use crate::sessions::keys::KeyRing;
use crate::time::Clock;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/idp", web::get().to(page))
        .route("/idp", web::post().to(set_identity))
        .route("/idp/options", web::post().to(set_options));
}

/// Where a test sign-in lands; only under `/console/{ws}`, as it reads the session.
pub fn test_routes(config: &mut web::ServiceConfig) {
    config.route("/idp/test", web::get().to(test_result));
}

/// How many recent sign-in responses the debugger lists.
const TRACES_SHOWN: i64 = 20;

/// What the form last sent, shown again with the error when it was refused, so nothing typed is
/// lost.
#[derive(Deserialize, Default)]
pub struct IdentityForm {
    /// `url`, `xml` or `manual`: which of the three ways the admin chose.
    via: String,
    #[serde(default)]
    metadata_url: String,
    #[serde(default)]
    metadata_xml: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    sso_url: String,
    #[serde(default)]
    slo_url: String,
    #[serde(default)]
    certificate: String,
}

/// A response the ACS received lately, as the debugger shows it.
pub struct TraceRow {
    pub time: String,
    pub signed_in: bool,
    pub code: String,
    pub email: String,
    pub meaning: &'static str,
    pub fix: &'static str,
    pub detail: String,
    /// (attribute, values) of a response that passed.
    pub attributes: Vec<(String, String)>,
    /// The response, decoded, with signatures and encrypted content redacted.
    pub response: String,
}

pub struct CertificateRow {
    pub subject: String,
    pub fingerprint: String,
    pub not_after: String,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "console/connection.html")]
struct ConnectionPage {
    chrome: Chrome,
    base: String,
    sp: Endpoints,
    metadata_url: String,
    login_test_url: String,
    connection: Option<Connection>,
    certificates: Vec<CertificateRow>,
    traces: Vec<TraceRow>,
    draft: IdentityForm,
}

async fn page(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    let (status, page) = connection_page(&visitor, &store, &base_url, saved.notice(), None).await?;
    Ok(render(status, &page))
}

async fn connection_page(
    visitor: &Visitor,
    store: &Store,
    base_url: &BaseUrl,
    notice: Option<Notice>,
    draft: Option<IdentityForm>,
) -> Result<(StatusCode, ConnectionPage), PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let now = crate::time::now();
    let (connection, traces) = store
        .read(move |conn| {
            let connection = connection::get(conn, &workspace_id)?;
            let traces = traces::recent(conn, &workspace_id, now, TRACES_SHOWN)?;
            Ok::<_, PageError>((connection, traces))
        })
        .await?;
    let certificates = connection
        .iter()
        .flat_map(|connection| &connection.certificates)
        .map(|certificate| CertificateRow {
            subject: certificate.subject.clone(),
            fingerprint: certificate.fingerprint.clone(),
            not_after: crate::time::rfc3339(&certificate.not_after),
            status: certificate.status(now),
        })
        .collect();
    let slug = &visitor.workspace.slug;
    let status = if draft.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        ConnectionPage {
            chrome: visitor
                .chrome("IdP connection", Section::Connection)
                .with_notice(notice),
            base: visitor.base.clone(),
            sp: Endpoints::new(base_url.as_str(), slug),
            metadata_url: format!("{}/saml/{slug}/metadata", base_url.as_str()),
            login_test_url: format!(
                "{}/saml/{slug}/login?RelayState={}/console/{slug}/idp/test",
                visitor.root, visitor.root
            ),
            connection,
            certificates,
            traces: traces.into_iter().map(trace_row).collect(),
            draft: draft.unwrap_or_default(),
        },
    ))
}

fn trace_row(trace: Trace) -> TraceRow {
    let signed_in = trace.outcome == traces::SIGNED_IN;
    let (meaning, fix) = if signed_in {
        ("The IdP's response passed every check.", "")
    } else {
        explain(&trace.outcome)
    };
    TraceRow {
        time: crate::time::rfc3339(&trace.occurred_at),
        signed_in,
        email: trace.email.unwrap_or_default(),
        meaning,
        fix,
        detail: trace.detail.unwrap_or_default(),
        attributes: trace
            .attributes
            .into_iter()
            .map(|(name, values)| (name, values.join(", ")))
            .collect(),
        response: trace.response,
        code: trace.outcome,
    }
}

/// What a refusal's reason code means, and what usually fixes it.
fn explain(code: &str) -> (&'static str, &'static str) {
    match code {
        "bad_signature" | "no_usable_certificate" => (
            "The response's signature does not match a certificate of this connection.",
            "The IdP signs with a certificate idgate does not have: load its metadata again, or add the new certificate.",
        ),
        "unsigned" | "signature_policy" => (
            "The response or assertion is not signed as this connection requires.",
            "In the IdP, sign the response and the assertion (Okta and Entra do by default), or relax the signing policy below.",
        ),
        "signature_shape" | "signature_algorithm" => (
            "The signature is of a shape or algorithm idgate refuses (SHA-1, or a signature that does not cover the element).",
            "Set the IdP's signature algorithm to RSA-SHA256.",
        ),
        "audience" => (
            "The assertion is meant for another service provider.",
            "In the IdP, set the Audience URI (SP entity ID) to the entity ID shown on this page.",
        ),
        "destination" | "recipient" => (
            "The response was sent to another address than this workspace's ACS.",
            "In the IdP, set the single sign-on (ACS) URL to the one shown on this page.",
        ),
        "issuer" => (
            "The response comes from another IdP than the one connected.",
            "Load the metadata of the IdP app people sign in with.",
        ),
        "expired" | "not_yet_valid" | "issued_in_future" => (
            "The assertion's time window does not include now.",
            "Check the IdP's and this server's clocks, or raise the allowed clock skew.",
        ),
        "in_response_to" | "request_reused" | "browser_mismatch" => (
            "The response answers a sign-in this browser did not start, or one already finished.",
            "Start the sign-in again from idgate; over plain http on a named host, serve idgate over https.",
        ),
        "unsolicited" => (
            "The IdP started the sign-in, and this connection accepts only sign-ins idgate starts.",
            "Allow IdP-initiated sign-in below, or start from idgate.",
        ),
        "replay" => (
            "This assertion was already used.",
            "Sign in again; a repeated post of the same response is refused by design.",
        ),
        "no_subject" => (
            "No email address could be read from the assertion.",
            "Send the email as the NameID or an `email` attribute, or adjust the attribute mapping.",
        ),
        "not_provisioned" => (
            "The person is not a member of this workspace and just-in-time provisioning is off.",
            "Assign the person to the app in the IdP so that SCIM provisions them, or turn on JIT.",
        ),
        "deactivated" => (
            "The person is deactivated in this workspace.",
            "Reactivate them in the IdP; SCIM carries it here.",
        ),
        "metadata_expired" => (
            "The IdP's metadata is past its validUntil.",
            "Load the IdP's metadata again.",
        ),
        "status" => (
            "The IdP answered with an error status instead of an assertion.",
            "Look at the IdP's own sign-in log: the person may not be assigned to the app.",
        ),
        "decryption" => (
            "The encrypted assertion could not be decrypted with this workspace's key.",
            "Give the IdP the encryption certificate from idgate's SP metadata again.",
        ),
        _ => (
            "The response is not a well-formed SAML response idgate accepts.",
            "Check the IdP's app type is SAML 2.0 and that it posts to the ACS URL shown here.",
        ),
    }
}

/// Sets the IdP's identity in one of the three ways; a refusal shows the page again with the
/// form as it was sent and the reason.
async fn set_identity(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    allowed: web::Data<InternalAllowList>,
    form: Submitted<IdentityForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let form = form.0;
    let result = match source_of(&form, &allowed).await {
        Ok(source) => {
            let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
            store
                .run(move |conn| {
                    connection::set(
                        conn,
                        &workspace_id,
                        Some(source),
                        OptionChanges::default(),
                        &audit,
                    )
                })
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => Ok(see_other(&format!("{}/idp?saved=1", visitor.base))),
        Err(SamlError::Store(error)) => Err(PageError::Unavailable(error)),
        Err(error) => {
            let notice = Notice::error(error.to_string());
            let (status, page) =
                connection_page(&visitor, &store, &base_url, notice, Some(form)).await?;
            Ok(render(status, &page))
        }
    }
}

async fn source_of(form: &IdentityForm, allowed: &InternalAllowList) -> Result<Source, SamlError> {
    fn given(value: &str) -> Option<&str> {
        Some(value.trim()).filter(|value| !value.is_empty())
    }
    match form.via.as_str() {
        "url" => {
            let url = given(&form.metadata_url)
                .ok_or_else(|| SamlError::Invalid("give the IdP's metadata URL".to_owned()))?;
            Ok(Source::Metadata {
                xml: connection::fetch_metadata(allowed, url).await?,
                url: Some(url.to_owned()),
            })
        }
        "xml" => {
            let xml = given(&form.metadata_xml).ok_or_else(|| {
                SamlError::Invalid("paste or upload the IdP's metadata".to_owned())
            })?;
            Ok(Source::Metadata {
                xml: xml.to_owned(),
                url: None,
            })
        }
        "manual" => {
            let (Some(entity_id), Some(sso_url), Some(certificate)) = (
                given(&form.entity_id),
                given(&form.sso_url),
                given(&form.certificate),
            ) else {
                return Err(SamlError::Invalid(
                    "give the IdP's entity ID, its sign-in URL and its signing certificate"
                        .to_owned(),
                ));
            };
            Source::manual(
                entity_id.to_owned(),
                sso_url.to_owned(),
                given(&form.slo_url).map(str::to_owned),
                &[certificate.to_owned()],
            )
        }
        _ => Err(SamlError::Invalid("choose how to give the IdP".to_owned())),
    }
}

/// The options form: a checkbox left unticked is sent as nothing, so each flag is its presence.
#[derive(Deserialize)]
struct OptionsForm {
    allow_idp_initiated: Option<String>,
    require_signed_response: Option<String>,
    require_signed_assertion: Option<String>,
    force_authn: Option<String>,
    jit: Option<String>,
    clock_skew_seconds: String,
}

async fn set_options(
    visitor: Visitor,
    store: web::Data<Store>,
    base_url: web::Data<BaseUrl>,
    form: Submitted<OptionsForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let form = form.0;
    let skew = form.clock_skew_seconds.trim().parse::<i32>().map_err(|_| {
        PageError::Invalid("The clock skew is a whole number of seconds.".to_owned())
    })?;
    let changes = OptionChanges {
        allow_idp_initiated: Some(form.allow_idp_initiated.is_some()),
        require_signed_response: Some(form.require_signed_response.is_some()),
        require_signed_assertion: Some(form.require_signed_assertion.is_some()),
        clock_skew_seconds: Some(skew),
        name_id_format: None,
        force_authn: Some(form.force_authn.is_some()),
        jit: Some(form.jit.is_some()),
    };
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    let result = store
        .run(move |conn| connection::set(conn, &workspace_id, None, changes, &audit))
        .await;
    match result {
        Ok(_) => Ok(see_other(&format!("{}/idp?saved=1", visitor.base))),
        Err(SamlError::Store(error)) => Err(PageError::Unavailable(error)),
        Err(error) => {
            let (_, page) = connection_page(
                &visitor,
                &store,
                &base_url,
                Notice::error(error.to_string()),
                None,
            )
            .await?;
            Ok(render(StatusCode::BAD_REQUEST, &page))
        }
    }
}

#[derive(Template)]
#[template(path = "console/test_result.html")]
struct TestResultPage {
    root: String,
    slug: String,
    /// Who the IdP signed in, with their roles; None when no session came of it.
    email: Option<String>,
    roles: Vec<String>,
    expires_at: String,
}

/// Where a test sign-in lands: who the IdP signed in, and with which roles. Any member's session
/// of the workspace may see it (the person tested is often not an admin); a refused sign-in never
/// gets here, and the IdP page lists why it was refused.
async fn test_result(
    request: actix_web::HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let slug = path.into_inner();
    let root = super::root(&base_url);
    let mut page = TestResultPage {
        root,
        slug: slug.clone(),
        email: None,
        roles: Vec::new(),
        expires_at: String::new(),
    };
    if let Ok(session) = session_of(&request, &store, keys, &clock).await
        && session.workspace.slug == slug
    {
        let (workspace_id, member_id) = (session.workspace.id.clone(), session.member.id.clone());
        let roles = store
            .read(move |conn| {
                Ok::<_, PageError>(crate::access::members::roles(
                    conn,
                    &workspace_id,
                    &member_id,
                )?)
            })
            .await?;
        page.roles = roles.iter().map(|r| r.role.as_str().to_owned()).collect();
        page.email = Some(session.email);
        page.expires_at = crate::time::rfc3339(&session.expires_at);
    }
    Ok(render(StatusCode::OK, &page))
}
