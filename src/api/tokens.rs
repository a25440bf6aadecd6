//! `/api/v1/workspaces/{ws}/tokens`: list, create and revoke API tokens (scope `tokens:write`).

use actix_web::{HttpResponse, ResponseError, web};

use crate::error::json_error;
use serde::{Deserialize, Serialize};

use crate::auth::{Authorized, needs};
use crate::db::Store;
use crate::permissions::Scopes;
use crate::tokens::{ApiToken, NewToken, TokenError};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/tokens").get(list).post(create))
        .service(web::resource("/tokens/{token_id}").delete(revoke));
}

#[derive(Serialize)]
struct TokenView {
    #[serde(flatten)]
    token: ApiToken,
    status: &'static str,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        let status = token.status(crate::time::now());
        TokenView { token, status }
    }
}

async fn list(
    auth: Authorized<needs::TokensWrite>,
    store: web::Data<Store>,
) -> Result<HttpResponse, TokenError> {
    let workspace_id = auth.workspace.id;
    let tokens = store
        .run(move |conn| crate::tokens::list(conn, &workspace_id))
        .await?;
    let tokens: Vec<TokenView> = tokens.into_iter().map(TokenView::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: Option<String>,
    scopes: Vec<String>,
    /// A duration such as `90d`; none for a token that does not expire.
    expires_in: Option<String>,
}

#[derive(Serialize)]
struct CreatedView {
    #[serde(flatten)]
    token: TokenView,
    /// The secret, shown this once.
    secret: String,
}

async fn create(
    auth: Authorized<needs::TokensWrite>,
    store: web::Data<Store>,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, TokenError> {
    let body = body.into_inner();
    let scopes = Scopes::from_list(body.scopes.iter().map(String::as_str))?;
    // A token may hand on only what it holds, or tokens:write alone would grant every scope.
    if !scopes.is_subset(&auth.scopes) {
        let extra: Vec<&str> = scopes
            .iter()
            .filter(|scope| !auth.scopes.contains(*scope))
            .map(|scope| scope.as_str())
            .collect();
        return Err(TokenError::ScopeEscalation(extra.join(",")));
    }
    let lifetime = body
        .expires_in
        .as_deref()
        .map(crate::tokens::parse_lifetime)
        .transpose()?;
    // A token minted by a person is theirs: it carries their authority and, unless asked
    // otherwise, expires.
    let minted_by = auth.acting_for.clone();
    let lifetime = match (lifetime, &minted_by) {
        (None, Some(_)) => Some(crate::tokens::MINTED_LIFETIME),
        (lifetime, _) => lifetime,
    };
    let new = NewToken {
        name: body.name,
        scopes,
        lifetime,
        minted_by,
        setup_link_id: None,
    };
    let (workspace, audit) = (auth.workspace, auth.audit);
    let issued = store
        .run(move |conn| crate::tokens::create(conn, &workspace, new, &audit))
        .await?;
    Ok(HttpResponse::Created().json(CreatedView {
        token: issued.token.into(),
        secret: issued.secret,
    }))
}

async fn revoke(
    auth: Authorized<needs::TokensWrite>,
    store: web::Data<Store>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, TokenError> {
    let (_, token_id) = path.into_inner();
    let (workspace_id, audit) = (auth.workspace.id, auth.audit);
    // Revoking twice is not an error: the client's intent holds either way.
    store
        .run(move |conn| crate::tokens::revoke(conn, &token_id, Some(&workspace_id), &audit))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// How a TokenError answers over HTTP.
impl ResponseError for TokenError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            TokenError::Scopes(_) | TokenError::InvalidName | TokenError::InvalidExpiry(_) => {
                StatusCode::BAD_REQUEST
            }
            TokenError::ScopeEscalation(_) => StatusCode::FORBIDDEN,
            TokenError::NotFound(_) => StatusCode::NOT_FOUND,
            TokenError::CorruptScopes(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TokenError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let code = match self {
            TokenError::Scopes(_) => "invalid_scopes",
            TokenError::ScopeEscalation(_) => "forbidden",
            TokenError::InvalidName | TokenError::InvalidExpiry(_) => "invalid_request",
            TokenError::NotFound(_) => "not_found",
            TokenError::CorruptScopes(_) => "internal",
            TokenError::Store(error) => return error.error_response(),
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}
