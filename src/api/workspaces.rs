//! `GET` and `PATCH /api/v1/workspaces/{ws}`. Workspaces are created from the command line, the
//! bootstrap path: a token belongs to a workspace, so none can make the first one.

use actix_web::{HttpResponse, ResponseError, web};

use crate::error::json_error;
use serde::Deserialize;

use crate::auth::{Authorized, needs};
use crate::db::Store;
use crate::workspaces::{WorkspaceChanges, WorkspaceError};

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(web::resource("").get(show).patch(change));
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

/// How a WorkspaceError answers over HTTP.
impl ResponseError for WorkspaceError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            WorkspaceError::InvalidSlug(_) | WorkspaceError::InvalidName => StatusCode::BAD_REQUEST,
            WorkspaceError::SlugTaken(_) => StatusCode::CONFLICT,
            WorkspaceError::NotFound(_) => StatusCode::NOT_FOUND,
            WorkspaceError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let code = match self {
            WorkspaceError::InvalidSlug(_) | WorkspaceError::InvalidName => "invalid_request",
            WorkspaceError::SlugTaken(_) => "conflict",
            WorkspaceError::NotFound(_) => "not_found",
            WorkspaceError::Store(error) => return error.error_response(),
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}
