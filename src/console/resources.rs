//! Resources, labels and grants: the workspace's sources, destinations and the rest with their
//! labels, and the resource-level grants to members and groups, given with a level, an expiry and
//! a justification, and revoked.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, NoFields, PageError, Saved, Section, Submitted, Visitor, render, see_other};
use crate::access::decide::{GrantSubject, GrantTarget};
use crate::access::grants::{self, NewGrant};
use crate::access::{self, resources};
use crate::db::Store;
use crate::directory;
use crate::permissions::{Level, Scope};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/resources", web::get().to(page))
        .route("/resources/grants", web::post().to(grant))
        .route("/resources/grants/{grant}/revoke", web::post().to(revoke));
}

pub struct ResourceRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub labels: String,
    pub source: String,
}

pub struct GrantRow {
    pub id: String,
    pub subject: String,
    pub target: String,
    pub level: String,
    pub expires_at: String,
    pub justification: String,
    pub live: bool,
}

#[derive(Template)]
#[template(path = "console/resources.html")]
struct ResourcesPage {
    chrome: Chrome,
    base: String,
    resources: Vec<ResourceRow>,
    grants: Vec<GrantRow>,
    levels: Vec<&'static str>,
    labels: Vec<String>,
}

async fn page(
    visitor: Visitor,
    store: web::Data<Store>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let (all, granted, labels, names) = store
        .read(move |conn| {
            let all = resources::list(conn, &workspace_id)?;
            let granted = grants::list(conn, &workspace_id)?;
            let labels = resources::labels_in_use(conn, &workspace_id)?;
            // Grants name members by id: show who they are.
            let ids: BTreeSet<&str> = granted
                .iter()
                .filter_map(|grant| match &grant.subject {
                    GrantSubject::Member(id) => Some(id.as_str()),
                    GrantSubject::Group(_) => None,
                })
                .collect();
            let names: BTreeMap<String, String> = directory::find_many(conn, &workspace_id, &ids)?
                .into_iter()
                .map(|(id, member)| (id.to_owned(), member.user_name))
                .collect();
            Ok::<_, PageError>((all, granted, labels, names))
        })
        .await?;
    let resource_names: BTreeMap<&str, &str> = all
        .iter()
        .map(|resource| (resource.id.as_str(), resource.name.as_str()))
        .collect();
    let now = crate::time::now();
    let grants = granted
        .iter()
        .map(|grant| GrantRow {
            id: grant.id.clone(),
            subject: match &grant.subject {
                GrantSubject::Member(id) => names.get(id).cloned().unwrap_or_else(|| id.clone()),
                GrantSubject::Group(group) => format!("group {group}"),
            },
            target: match &grant.target {
                GrantTarget::Resource(id) => resource_names
                    .get(id.as_str())
                    .map_or_else(|| id.clone(), |name| name.to_string()),
                GrantTarget::Label(label) => format!("label {}", label.as_str()),
            },
            level: grant.level.as_str().to_owned(),
            expires_at: grant
                .expires_at
                .map_or_else(|| "never".to_owned(), |at| crate::time::rfc3339(&at)),
            justification: grant.justification.clone().unwrap_or_default(),
            live: grant.is_live(now),
        })
        .collect();
    let rows = all
        .iter()
        .map(|resource| ResourceRow {
            id: resource.id.clone(),
            name: resource.name.clone(),
            kind: resource.kind.as_str().to_owned(),
            labels: resource
                .labels
                .iter()
                .map(|label| label.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            source: resource
                .source_id
                .as_deref()
                .and_then(|id| resource_names.get(id))
                .map(|name| name.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let page = ResourcesPage {
        chrome: visitor
            .chrome("Resources and grants", Section::Resources)
            .with_notice(saved.notice()),
        base: visitor.base.clone(),
        resources: rows,
        grants,
        levels: Level::ALL.iter().map(|level| level.as_str()).collect(),
        labels: labels
            .iter()
            .map(|label| label.as_str().to_owned())
            .collect(),
    };
    Ok(render(StatusCode::OK, &page))
}

/// A grant as the form gives it: to a member (email) or a group, on a resource or a label.
#[derive(Deserialize)]
struct GrantForm {
    /// `member` or `group`.
    to: String,
    who: String,
    /// A resource id, or `label:NAME`.
    on: String,
    level: String,
    #[serde(default)]
    expires_in: String,
    #[serde(default)]
    justification: String,
}

async fn grant(
    visitor: Visitor,
    store: web::Data<Store>,
    form: Submitted<GrantForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let form = form.0;
    let who = Some(form.who.trim().to_owned()).filter(|who| !who.is_empty());
    let (member, group) = match form.to.as_str() {
        "member" => (who, None),
        "group" => (None, who),
        _ => {
            return Err(PageError::Invalid(
                "Grant to a member or a group.".to_owned(),
            ));
        }
    };
    let (resource, label) = match form.on.strip_prefix("label:") {
        Some(label) => (None, Some(access::parse(label)?)),
        None => (Some(form.on), None),
    };
    let expires_at = Some(form.expires_in.trim())
        .filter(|raw| !raw.is_empty())
        .map(grants::expiry_after)
        .transpose()?;
    let new = NewGrant {
        member,
        group,
        resource,
        label,
        level: access::parse(&form.level)?,
        expires_at,
        justification: Some(form.justification),
        approver: None,
        review_date: None,
    };
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    store
        .run(move |conn| grants::create(conn, &workspace_id, new, &audit))
        .await?;
    Ok(see_other(&format!("{}/resources?saved=1", visitor.base)))
}

async fn revoke(
    visitor: Visitor,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
    _form: Submitted<NoFields>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let (_, id) = path.into_inner();
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    store
        .run(move |conn| grants::revoke(conn, &workspace_id, &id, &audit))
        .await?;
    Ok(see_other(&format!("{}/resources?saved=1", visitor.base)))
}
