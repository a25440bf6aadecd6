//! Caps on a request's head and on the time its body takes. actix-web itself refuses a head over
//! 128 KiB or with more than 96 headers, and disconnects a client that has not sent its head within
//! the request timeout, but it waits for a body as long as the client keeps the connection open;
//! idgate's own caps are tighter, each answered with its status and an error body.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::rt::time::Sleep;
use actix_web::web::Bytes;
use futures_util::Stream;

/// The longest request target (path and query) accepted. The longest legitimate ones, SAML
/// messages in the Redirect binding, are a few KiB.
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// The most header bytes (names and values together) one request may carry: room for a
/// browser's cookies on a shared domain, not for a flood of headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long a client has to send a request's head before it is answered 408 and disconnected
/// (slow-header clients hold connections open).
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has, once its head is in, to send the whole body. The largest body accepted
/// (1 MiB of SCIM bulk) needs 100 KiB/s; IdPs and browsers posting a SAML form send far faster, and
/// a client that trickles its body would otherwise hold a connection for as long as it likes.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Ends the body of a request that is not complete within [`REQUEST_BODY_TIMEOUT`]: the handler
/// reading it fails, and the client gets 408 and a closed connection.
pub async fn cut_off_slow_bodies(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let payload = request.take_payload();
    if matches!(payload, Payload::None) {
        // No body, no timer: reads are the hot path.
        return Ok(next.call(request).await?.map_into_left_body());
    }
    let timed_out = Rc::new(Cell::new(false));
    request.set_payload(Payload::from(Box::pin(BodyDeadline {
        body: payload,
        deadline: Box::pin(actix_web::rt::time::sleep(REQUEST_BODY_TIMEOUT)),
        timed_out: timed_out.clone(),
    })
        as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>));
    let response = next.call(request).await?;
    if !timed_out.get() {
        return Ok(response.map_into_left_body());
    }
    let message = format!(
        "the request body was not complete within {} seconds",
        REQUEST_BODY_TIMEOUT.as_secs()
    );
    // The error body of the API the request was for: SCIM clients read SCIM errors.
    let mut answer = if response
        .request()
        .path()
        .starts_with(crate::api::scim::SCOPE)
    {
        actix_web::ResponseError::error_response(&crate::scim::error::ScimError::Http(
            StatusCode::REQUEST_TIMEOUT,
            message,
        ))
    } else {
        crate::error::json_error(StatusCode::REQUEST_TIMEOUT, "request_timeout", &message)
    };
    answer
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(response.into_response(answer).map_into_right_body())
}

/// A request body that fails once its deadline passes.
struct BodyDeadline {
    body: Payload,
    deadline: Pin<Box<Sleep>>,
    timed_out: Rc<Cell<bool>>,
}

impl Stream for BodyDeadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.timed_out.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.timed_out.set(true);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request body timed out",
        )))))
    }
}
