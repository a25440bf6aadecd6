//! Caps on a request's head. actix-web itself refuses a head over 128 KiB or with more than 96
//! headers, and disconnects a client that has not sent its head within the request timeout;
//! idgate's own caps are tighter, each answered with its status and a JSON error.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;

/// The longest request target (path and query) accepted. The longest legitimate ones, SAML
/// messages in the Redirect binding, are a few KiB.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// The most header bytes (names and values together) one request may carry: room for a
/// browser's cookies on a shared domain, not for a flood of headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long a client has to send a request's head before it is answered 408 and disconnected
/// (slow-header clients hold connections open).
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn cap_request_head(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let url_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let refusal = if url_bytes > MAX_URL_BYTES {
        Some((
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the URL is {url_bytes} bytes; at most {MAX_URL_BYTES} are accepted"),
        ))
    } else if header_bytes > MAX_HEADER_BYTES {
        Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        ))
    } else {
        None
    };
    match refusal {
        Some((status, code, message)) => Ok(request
            .into_response(crate::error::json_error(status, code, &message))
            .map_into_right_body()),
        None => Ok(next.call(request).await?.map_into_left_body()),
    }
}
