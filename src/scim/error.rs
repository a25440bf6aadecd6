//! SCIM errors (RFC 7644 §3.12): every failure is a SCIM Error body with the HTTP status and,
//! where one applies, a `scimType`.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::db::StoreError;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const MEDIA_TYPE: &str = "application/scim+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    /// RFC 9865: a cursor this server did not issue.
    InvalidCursor,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidCursor => "invalidCursor",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// A 400 with a `scimType` naming what was wrong.
    #[error("{detail}")]
    BadRequest { scim_type: ScimType, detail: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the resource has changed since version {0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A status actix chose before a handler ran (405 for a wrong method, say).
    #[error("{1}")]
    Http(StatusCode, String),
    /// Refused before the request reached SCIM (the token, its scope, a rate limit): the status,
    /// the message and the headers (a challenge, `Retry-After`) the gate answered with.
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        detail: String,
        headers: HeaderMap,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ScimError {
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError::BadRequest {
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidValue, detail)
    }

    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad(ScimType::InvalidPath, detail)
    }

    pub fn scim_type(&self) -> Option<ScimType> {
        match self {
            ScimError::BadRequest { scim_type, .. } => Some(*scim_type),
            ScimError::Conflict(_) => Some(ScimType::Uniqueness),
            ScimError::PayloadTooLarge(_) | ScimError::Store(StoreError::OverBudget) => {
                Some(ScimType::TooMany)
            }
            _ => None,
        }
    }
}

impl From<diesel::result::Error> for ScimError {
    fn from(error: diesel::result::Error) -> Self {
        ScimError::Store(error.into())
    }
}

impl ResponseError for ScimError {
    fn status_code(&self) -> StatusCode {
        match self {
            ScimError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ScimError::NotFound(_) => StatusCode::NOT_FOUND,
            ScimError::Conflict(_) => StatusCode::CONFLICT,
            ScimError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ScimError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ScimError::Http(status, _) => *status,
            ScimError::Refused { status, .. } => *status,
            ScimError::Store(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                "the service is temporarily unavailable; try again shortly".to_owned()
            }
            status if status.is_server_error() => "internal error".to_owned(),
            _ => self.to_string(),
        };
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.as_u16().to_string(),
            "detail": detail,
        });
        if let Some(scim_type) = self.scim_type() {
            body["scimType"] = json!(scim_type.as_str());
        }
        let mut response = HttpResponse::build(status);
        response.content_type(MEDIA_TYPE);
        if let ScimError::Refused { headers, .. } = self {
            for (name, value) in headers {
                response.insert_header((name.clone(), value.clone()));
            }
        }
        if let ScimError::Store(StoreError::CostlyQueriesRunning) = self {
            response.insert_header((RETRY_AFTER, 1));
        }
        response.body(body.to_string())
    }
}
