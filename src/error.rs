//! How errors reach clients.
//!
//! Layering, as in crates.io: `anyhow` outside the request path (start-up, CLI), `QueryResult` and
//! [`crate::db::StoreError`] in storage code, and one `thiserror` enum per capability, a plain value
//! in its room, whose `ResponseError` (its HTTP answer) sits beside the handlers in `api/`. Every
//! admin-API error body is `{"error": CODE, "message": TEXT}`; SCIM answers with its own Error body. Messages are written for the client and never carry secrets; a 5xx says
//! nothing about its cause, which is logged with the request id instead.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::db::StoreError;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let message = match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            "the service is temporarily unavailable; try again shortly"
        }
        status if status.is_server_error() => "internal error",
        _ => message,
    };
    HttpResponse::build(status).json(ErrorBody {
        error: code,
        message,
    })
}

impl ResponseError for StoreError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            StoreError::NotFound => StatusCode::NOT_FOUND,
            StoreError::OverBudget => StatusCode::BAD_REQUEST,
            StoreError::CostlyQueriesRunning => StatusCode::TOO_MANY_REQUESTS,
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Query(_) | StoreError::TaskFailed | StoreError::Corrupt(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let code = match self {
            StoreError::NotFound => "not_found",
            StoreError::OverBudget => "too_costly",
            StoreError::CostlyQueriesRunning => "rate_limited",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Query(_) | StoreError::TaskFailed => "internal",
            StoreError::Corrupt(detail) => {
                tracing::error!(detail = detail.as_str(), "unusable stored data");
                "internal"
            }
        };
        json_error(self.status_code(), code, &self.to_string())
    }
}

/// A client's malformed request (bad JSON body, path segment or query string).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    message: String,
}

impl ResponseError for BadRequest {
    fn status_code(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), "bad_request", &self.message)
    }
}

fn bad_request(error: impl std::fmt::Display) -> actix_web::Error {
    BadRequest {
        message: error.to_string(),
    }
    .into()
}

pub fn json_config() -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|error, _: &HttpRequest| match error {
            actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
            | actix_web::error::JsonPayloadError::Overflow { .. } => PayloadTooLarge.into(),
            other => bad_request(other),
        })
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|error, _| bad_request(error))
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|error, _| bad_request(error))
}

#[derive(Debug, thiserror::Error)]
#[error("the request body is too large")]
pub struct PayloadTooLarge;

impl ResponseError for PayloadTooLarge {
    fn status_code(&self) -> StatusCode {
        StatusCode::PAYLOAD_TOO_LARGE
    }
    fn error_response(&self) -> HttpResponse {
        json_error(self.status_code(), "payload_too_large", &self.to_string())
    }
}

/// The answer for every path no route matches.
pub async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
