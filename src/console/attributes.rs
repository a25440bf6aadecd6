//! Attribute mapping: which SAML attributes give a person's email, names, role and groups, set from
//! a preset or by hand, previewed against the attributes of the latest sign-in before saving.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{Chrome, PageError, Saved, Section, Submitted, Visitor, render, see_other};
use crate::access::attributes::{self, AttributeMapping, MappingChange, PRESETS};
use crate::db::Store;
use crate::permissions::Scope;
use crate::saml::traces::{self, Trace};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/attributes", web::get().to(page))
        .route("/attributes/preview", web::post().to(preview))
        .route("/attributes", web::post().to(save));
}

/// One field of the mapping, and what the latest sign-in's attributes give it.
pub struct FieldRow {
    pub field: &'static str,
    pub attribute: String,
    /// The values the latest sign-in carried in that attribute; None when it carried none.
    pub values: Option<String>,
}

#[derive(Template)]
#[template(path = "console/attributes.html")]
struct AttributesPage {
    chrome: Chrome,
    base: String,
    presets: [&'static str; 5],
    /// The mapping saved now, or the one previewed.
    mapping: AttributeMapping,
    fields: Vec<FieldRow>,
    /// Whether `mapping` is a preview, not yet saved.
    previewing: bool,
    /// When the sign-in the preview reads was, and who it was.
    sample: Option<(String, String)>,
}

fn field_rows(mapping: &AttributeMapping, sample: Option<&Trace>) -> Vec<FieldRow> {
    let row = |field, attribute: Option<&String>| FieldRow {
        field,
        attribute: attribute.cloned().unwrap_or_default(),
        values: attribute
            .and_then(|name| sample?.attributes.get(name))
            .map(|values| values.join(", ")),
    };
    vec![
        row("Email", Some(&mapping.email)),
        row("First name", Some(&mapping.first_name)),
        row("Last name", Some(&mapping.last_name)),
        row("Role", mapping.role.as_ref()),
        row("Groups", mapping.groups.as_ref()),
    ]
}

async fn attributes_page(
    visitor: &Visitor,
    store: &Store,
    change: Option<MappingChange>,
    saved: Option<super::Notice>,
) -> Result<AttributesPage, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let workspace_id = visitor.workspace.id.clone();
    let now = crate::time::now();
    let (current, sample) = store
        .read(move |conn| {
            let current = attributes::get(conn, &workspace_id)?;
            let sample = traces::latest_signed_in(conn, &workspace_id, now)?;
            Ok::<_, PageError>((current, sample))
        })
        .await?;
    let previewing = change.is_some();
    let mapping = match change {
        Some(change) => attributes::proposed(&current, change)?,
        None => current,
    };
    Ok(AttributesPage {
        chrome: visitor
            .chrome("Attribute mapping", Section::Attributes)
            .with_notice(saved),
        base: visitor.base.clone(),
        presets: PRESETS,
        fields: field_rows(&mapping, sample.as_ref()),
        mapping,
        previewing,
        sample: sample.map(|trace| {
            (
                crate::time::rfc3339(&trace.occurred_at),
                trace.email.unwrap_or_default(),
            )
        }),
    })
}

async fn page(
    visitor: Visitor,
    store: web::Data<Store>,
    saved: web::Query<Saved>,
) -> Result<HttpResponse, PageError> {
    let page = attributes_page(&visitor, &store, None, saved.notice()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The mapping form: a preset, attribute names, or both (names then override the preset's).
#[derive(Deserialize)]
struct MappingForm {
    #[serde(default)]
    preset: String,
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    role: Option<String>,
    groups: Option<String>,
}

impl MappingForm {
    fn change(self) -> MappingChange {
        MappingChange {
            preset: Some(self.preset).filter(|preset| !preset.is_empty()),
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            role: self.role,
            groups: self.groups,
        }
    }
}

async fn preview(
    visitor: Visitor,
    store: web::Data<Store>,
    form: Submitted<MappingForm>,
) -> Result<HttpResponse, PageError> {
    let page = attributes_page(&visitor, &store, Some(form.0.change()), None).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn save(
    visitor: Visitor,
    store: web::Data<Store>,
    form: Submitted<MappingForm>,
) -> Result<HttpResponse, PageError> {
    visitor.require(Scope::WorkspaceWrite)?;
    let change = form.0.change();
    let (workspace_id, audit) = (visitor.workspace.id.clone(), visitor.audit.clone());
    store
        .run(move |conn| attributes::set(conn, &workspace_id, change, &audit))
        .await?;
    Ok(see_other(&format!("{}/attributes?saved=1", visitor.base)))
}
