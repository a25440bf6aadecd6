//! The HTTP server: state, middleware and routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::{DefaultHeaders, ErrorHandlerResponse, ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use diesel::connection::SimpleConnection;

use crate::auth::ratelimit::RateLimiter;
use crate::config::Settings;
use crate::db::{Backend, Store, StoreError};
use crate::outbound::InternalAllowList;
use crate::time::Clock;
use crate::{access, api, console, error, replicas, saml, sessions};

pub struct Application {
    server: Server,
    port: u16,
    store: Store,
    allowed_internal_hosts: InternalAllowList,
    /// Set when replicas may share the database, so that they share rate limits too.
    shared_limiter: Option<Arc<RateLimiter>>,
}

impl Application {
    /// Opens the store (applying migrations) and binds the listener. Bind port 0 to let the
    /// system pick one, as the tests do; [`Application::port`] tells which.
    pub fn build(settings: &Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Clock::default())
    }

    /// As [`Application::build`], reading time from `clock` (tests move it forward).
    pub fn build_with_clock(settings: &Settings, clock: Clock) -> anyhow::Result<Application> {
        let store = Store::open(&settings.database_url)?;
        let background_store = store.clone();
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let bound = listener.local_addr()?;
        let base_url = settings.public_base_url(bound);
        let store = web::Data::new(store);
        let public_base_url = web::Data::new(base_url.clone());
        let decision_cache = web::Data::new(access::cache::DecisionCache::default());
        let scim_memo = web::Data::new(api::scim::actions::ScimMemo::default());
        let member_adds = web::Data::new(api::scim::actions::MemberAdds::default());
        let verified_sessions = web::Data::new(api::sessions::VerifiedSessions::default());
        let session_keys = web::Data::new(sessions::keys::KeyRing::default());
        let rate_limiter = web::Data::new(RateLimiter::new(settings.rate_limit));
        let shared_limiter = (settings.database_url.backend() == Backend::Postgres)
            .then(|| rate_limiter.clone().into_inner());
        let clock = web::Data::new(clock);
        let allowed_internal_hosts = web::Data::new(settings.allowed_internal_hosts.clone());
        let trusted_proxies = web::Data::new(settings.trusted_proxies.clone());
        let https = base_url.as_str().starts_with("https://");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(store.clone())
                .app_data(decision_cache.clone())
                .app_data(scim_memo.clone())
                .app_data(member_adds.clone())
                .app_data(verified_sessions.clone())
                .app_data(session_keys.clone())
                .app_data(rate_limiter.clone())
                .app_data(clock.clone())
                .app_data(allowed_internal_hosts.clone())
                .app_data(trusted_proxies.clone())
                .app_data(public_base_url.clone())
                .app_data(error::json_config())
                .app_data(error::query_config())
                .app_data(error::path_config())
                .wrap(
                    ErrorHandlers::new()
                        .handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed),
                )
                .wrap(from_fn(api::scim::paths::canonical_paths))
                .wrap(from_fn(crate::limits::cut_off_slow_bodies))
                .wrap(from_fn(crate::limits::cap_request_head))
                .wrap(security_headers(https))
                .wrap(from_fn(crate::telemetry::observe_requests))
                .route("/healthz", web::get().to(healthz))
                .route("/metrics", web::get().to(metrics))
                .route("/readyz", web::get().to(readyz))
                .service(
                    web::scope("/api/v1")
                        .service(
                            web::scope("/workspaces/{ws}")
                                .wrap(from_fn(crate::auth::gate))
                                .configure(api::workspaces::routes)
                                .configure(api::tokens::routes)
                                .configure(api::audit::routes)
                                .configure(api::access::routes)
                                .configure(api::saml::routes)
                                .configure(api::links::routes),
                        )
                        .configure(api::access::write_key_routes)
                        .configure(api::sessions::routes),
                )
                .configure(console::routes)
                .configure(api::sessions::public_routes)
                .configure(api::scim::routes)
                .configure(api::saml::sp_routes)
                .default_service(web::to(error::not_found))
        })
        // A list is streamed in several writes: with Nagle's algorithm on, the last one waited
        // for the client's delayed ACK, 40 ms on every page of users an import reads.
        .tcp_nodelay(true)
        .client_request_timeout(crate::limits::REQUEST_HEAD_TIMEOUT)
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        tracing::info!(address = %bound, base_url = base_url.as_str(), database = %settings.database_url, "listening");
        Ok(Application {
            server,
            port: bound.port(),
            store: background_store,
            allowed_internal_hosts: settings.allowed_internal_hosts.clone(),
            shared_limiter,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then lets requests in flight finish. Background work (the
    /// hourly IdP metadata refresh; on PostgreSQL, the replica heartbeat) runs as long as the
    /// server does.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let heartbeat = self
            .shared_limiter
            .map(|limiter| actix_web::rt::spawn(replicas::run(self.store.clone(), limiter)));
        let refresh =
            actix_web::rt::spawn(saml::refresh::run(self.store, self.allowed_internal_hosts));
        let stopped = self.server.await;
        refresh.abort();
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        stopped
    }
}

/// Headers every answer carries: no content sniffing, no referrer (URLs carry SAML messages and
/// relay paths), and behind an https base URL, HSTS.
fn security_headers(https: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"));
    if https {
        headers.add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"))
    } else {
        headers
    }
}

/// The process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The database answers; 503 when it does not. Says how many replicas this one counts.
async fn readyz(
    store: web::Data<Store>,
    limiter: web::Data<RateLimiter>,
) -> Result<HttpResponse, StoreError> {
    store
        .read(|conn| conn.batch_execute("SELECT 1").map_err(StoreError::from))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ready",
        "replicas": limiter.replicas(),
    })))
}

/// Prometheus's text format (see [`crate::metrics`]); the gauges are read as it is asked.
async fn metrics(store: web::Data<Store>, clock: web::Data<Clock>) -> HttpResponse {
    store.report_gauges();
    let now = clock.now();
    match store
        .read(move |conn| sessions::live(conn, now).map_err(StoreError::from))
        .await
    {
        Ok(live) => crate::metrics::metrics().sessions_live.set(live),
        Err(error) => tracing::warn!(%error, "cannot count the live sessions for /metrics"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::metrics().render())
}

/// actix answers a known path with the wrong method with an empty 405; give it the JSON error body.
fn method_not_allowed<B>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (request, _) = response.into_parts();
    let body = error::json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed here",
    );
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, body).map_into_right_body(),
    ))
}
