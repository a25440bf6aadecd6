//! `GET` and `PATCH /api/v1/workspaces/{ws}`. Workspaces are created from the command line, the
//! bootstrap path: a token belongs to a workspace, so none can make the first one.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::{Authorized, needs};
use crate::db::Store;
use crate::workspaces::{WorkspaceChanges, WorkspaceError};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("/workspaces/{ws}").get(show).patch(change));
}

async fn show(auth: Authorized<needs::WorkspaceRead>) -> HttpResponse {
    HttpResponse::Ok().json(auth.workspace)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    name: Option<String>,
    hipaa: Option<bool>,
    tracking_plan_approval: Option<bool>,
}

async fn change(
    auth: Authorized<needs::WorkspaceWrite>,
    store: web::Data<Store>,
    body: web::Json<ChangeRequest>,
) -> Result<HttpResponse, WorkspaceError> {
    let body = body.into_inner();
    let changes = WorkspaceChanges {
        name: body.name,
        hipaa: body.hipaa,
        tracking_plan_approval: body.tracking_plan_approval,
    };
    let slug = auth.workspace.slug;
    let audit = auth.audit;
    let workspace = store
        .run(move |conn| crate::workspaces::update(conn, &slug, changes, &audit))
        .await?;
    Ok(HttpResponse::Ok().json(workspace))
}
