//! The ways in and out: the console's front page, the workspace sign-in (the workspace's SAML
//! login), the one-time bootstrap link, and sign-out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{NoFields, PageError, Submitted, render, root, see_other};
use crate::access::members;
use crate::audit::{Actor, AuditContext};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::directory::{self, Member};
use crate::links::{self, Kind};
use crate::permissions::{Role, Scope, Scopes};
use crate::scim::resource::normalize;
use crate::scim::schema::ResourceKind;
use crate::sessions::keys::KeyRing;
use crate::sessions::{self, NewSession};
use crate::telemetry::request_id;
use crate::time::Clock;
use crate::workspaces;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("", web::get().to(|| async { see_other("/console/") }))
        .route("/-/sign-in", web::get().to(choose_workspace))
        .route("/-/link/{secret}", web::get().to(confirm_link))
        .route("/-/link/{secret}", web::post().to(use_link))
        .route("/-/sign-out", web::post().to(sign_out));
}

#[derive(Template)]
#[template(path = "console/index.html")]
struct IndexPage {
    root: String,
    /// The workspace the session is good for, when the person may administer it: (slug, name).
    workspace: Option<(String, String)>,
    /// Who is signed in, if anyone.
    who: Option<String>,
}

/// The front page: the workspace the signed-in person may administer (a session is good for one),
/// or a form that leads to a workspace's sign-in.
async fn index(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
) -> Result<HttpResponse, PageError> {
    let mut page = IndexPage {
        root: root(&base_url),
        workspace: None,
        who: None,
    };
    if let Ok(session) =
        crate::auth::session::session_of(&request, &store, keys.clone(), &clock).await
    {
        let (workspace_id, member_id) = (session.workspace.id.clone(), session.member.id.clone());
        let roles = store
            .read(move |conn| Ok::<_, PageError>(members::roles(conn, &workspace_id, &member_id)?))
            .await?;
        let roles: Vec<Role> = roles.iter().map(|assignment| assignment.role).collect();
        let scopes = Scopes::held_by_person(&roles, session.workspace.tracking_plan_approval);
        page.who = Some(session.email);
        if scopes.contains(Scope::WorkspaceWrite) {
            page.workspace = Some((session.workspace.slug, session.workspace.name));
        }
    }
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct WorkspaceQuery {
    workspace: String,
}

/// The front page's form: on to the workspace's console, which asks to sign in.
async fn choose_workspace(
    base_url: web::Data<BaseUrl>,
    query: web::Query<WorkspaceQuery>,
) -> Result<HttpResponse, PageError> {
    let slug = query.into_inner().workspace.trim().to_lowercase();
    workspaces::validate_slug(&slug)?;
    Ok(see_other(&format!("{}/console/{slug}/", root(&base_url))))
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    root: String,
    slug: String,
}

/// What a visitor without a session of the workspace sees: the way to its SAML login, and the
/// way in before any IdP is connected.
pub fn sign_in_page(slug: &str, root: &str) -> HttpResponse {
    render(
        StatusCode::UNAUTHORIZED,
        &SignInPage {
            root: root.to_owned(),
            slug: slug.to_owned(),
        },
    )
}

#[derive(Template)]
#[template(path = "console/link.html")]
struct LinkPage {
    root: String,
    workspace_name: String,
    email: String,
}

/// The bootstrap link asks before it signs in: a link scanner that follows it does not spend it.
async fn confirm_link(
    store: web::Data<Store>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
    secret: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let now = clock.now();
    let (link, workspace) = store
        .read(move |conn| {
            let link = links::find_live(conn, Kind::Bootstrap, &secret, now)?
                .ok_or(PageError::LinkEnded)?;
            let workspace = workspaces::find(conn, &link.workspace_id)?;
            Ok::<_, PageError>((link, workspace))
        })
        .await?;
    Ok(render(
        StatusCode::OK,
        &LinkPage {
            root: root(&base_url),
            workspace_name: workspace.name,
            email: link.email.unwrap_or_default(),
        },
    ))
}

/// Spends the bootstrap link: its person, made a member if need be and an Owner, is signed in.
async fn use_link(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
    secret: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    crate::auth::session::same_origin(&request).map_err(|_| PageError::CrossSite)?;
    let now = clock.now();
    let context = AuditContext {
        actor: Actor::System("console-link".to_owned()),
        request_id: request_id(),
    };
    let issuer = base_url.as_str().to_owned();
    let (workspace, issued) = store
        .run(move |conn| {
            let link = links::find_live(conn, Kind::Bootstrap, &secret, now)?
                .ok_or(PageError::LinkEnded)?;
            let workspace = workspaces::find(conn, &link.workspace_id)?;
            let signer = keys.signing_key(conn, now)?;
            let email = link.email.clone().unwrap_or_default();
            let issued = conn.write(|tx| {
                if !links::record_use(tx, Kind::Bootstrap, &link, &context, now)? {
                    return Err(PageError::LinkEnded);
                }
                let member = match directory::find(tx, &workspace.id, &email)? {
                    Some(member) if !member.active => {
                        return Err(PageError::Invalid(format!(
                            "{email} is deactivated in this workspace; reactivate them in your IdP first."
                        )));
                    }
                    Some(member) => member,
                    None => new_member(tx, &workspace.id, &email, &context)?,
                };
                members::grant_role(tx, &workspace.id, &member, Role::Owner, &context)?;
                Ok(sessions::create(
                    tx,
                    &signer,
                    &issuer,
                    NewSession {
                        email: &email,
                        workspace: &workspace,
                        member_id: &member.id,
                        name_id: &email,
                        session_index: None,
                        idp_expires_at: None,
                    },
                    now,
                )?)
            })?;
            Ok::<_, PageError>((workspace, issued))
        })
        .await?;
    let secure = base_url.as_str().starts_with("https://");
    let lifetime = (issued.expires_at - now).num_seconds();
    let cookie = crate::api::sessions::session_cookie(issued.token, lifetime, secure);
    let mut response = see_other(&format!("{}/console/{}/", root(&base_url), workspace.slug));
    response
        .add_cookie(&cookie)
        .expect("a session token is a valid cookie value");
    Ok(response)
}

/// The person the bootstrap link names, made a member as a SCIM create would make them.
fn new_member(
    tx: &mut crate::db::Tx<'_>,
    workspace_id: &str,
    email: &str,
    context: &AuditContext,
) -> Result<Member, PageError> {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "emails": [{ "value": email, "type": "work", "primary": true }],
        "active": true,
    });
    let invalid = |error: String| PageError::Invalid(format!("cannot add {email}: {error}"));
    let document = normalize(ResourceKind::User, &user).map_err(|e| invalid(e.to_string()))?;
    let stored = directory::users::insert(
        tx,
        workspace_id,
        document,
        context,
        "console.member.created",
    )
    .map_err(|error| match error {
        crate::scim::error::ScimError::Store(error) => PageError::Unavailable(error),
        other => invalid(other.to_string()),
    })?;
    Ok(Member {
        id: stored.id,
        user_name: stored.user_name,
        active: stored.active,
    })
}

/// Ends the session (the IdP's own session stays: signing out of the console is not signing out
/// of everything the IdP serves).
async fn sign_out(
    request: HttpRequest,
    store: web::Data<Store>,
    keys: web::Data<KeyRing>,
    clock: web::Data<Clock>,
    base_url: web::Data<BaseUrl>,
    _form: Submitted<NoFields>,
) -> Result<HttpResponse, PageError> {
    if let Ok(session) = crate::auth::session::session_of(&request, &store, keys, &clock).await {
        let now = clock.now();
        store
            .write(move |tx| Ok::<_, PageError>(sessions::revoke(tx, &session.session_id, now)?))
            .await?;
    }
    let mut response = see_other(&format!("{}/console/", root(&base_url)));
    response
        .add_cookie(&crate::api::sessions::cleared_cookie())
        .expect("an empty cookie is valid");
    Ok(response)
}
