//! What `GET /metrics` reports, in Prometheus's text format. The families are registered once per
//! process; their labels are bounded sets (route templates, statuses, reason codes, cache names),
//! never an id, an email or a token.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Request latency buckets, in seconds: most answers take under a millisecond.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    /// By method, route template and status.
    pub requests: IntCounterVec,
    /// By method and route template.
    pub request_seconds: HistogramVec,
    /// SCIM writes (also those inside `/Bulk`), by resource type, operation and outcome.
    pub scim_operations: IntCounterVec,
    /// Refused SAML responses, by reason code.
    pub saml_refusals: IntCounterVec,
    /// Reads kept in memory, by cache and event (hit, miss, invalidation).
    pub cache_events: IntCounterVec,
    pub sessions_live: IntGauge,
    /// Pooled database connections, by state (idle, in_use).
    pub pool_connections: IntGaugeVec,
    /// Writes waiting for SQLite's writer.
    pub writer_queue: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::register);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn register() -> Metrics {
        let registry =
            Registry::new_custom(Some("idgate".into()), None).expect("a valid metric prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let family =
                IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter family");
            registry
                .register(Box::new(family.clone()))
                .expect("each family is registered once");
            family
        };
        let requests = counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            &["method", "route", "status"],
        );
        let scim_operations = counter(
            "scim_operations_total",
            "SCIM writes, by resource type, operation and outcome (ok or refused).",
            &["resource", "operation", "outcome"],
        );
        let saml_refusals = counter(
            "saml_refusals_total",
            "SAML responses refused, by reason code.",
            &["reason"],
        );
        let cache_events = counter(
            "cache_events_total",
            "Reads kept in memory: hits, misses and invalidations, by cache.",
            &["cache", "event"],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("a valid histogram family");
        let sessions_live = IntGauge::new("sessions_live", "Sessions neither ended nor expired.")
            .expect("a valid gauge");
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Pooled database connections, by state (idle, in_use).",
            ),
            &["state"],
        )
        .expect("a valid gauge family");
        let writer_queue = IntGauge::new(
            "db_writer_queue",
            "Writes waiting for the SQLite writer (0 on PostgreSQL).",
        )
        .expect("a valid gauge");
        for family in [
            Box::new(request_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sessions_live.clone()),
            Box::new(pool_connections.clone()),
            Box::new(writer_queue.clone()),
        ] {
            registry
                .register(family)
                .expect("each family is registered once");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            scim_operations,
            saml_refusals,
            cache_events,
            sessions_live,
            pool_connections,
            writer_queue,
        }
    }

    /// The counter of one cache's `event`, resolved once by its holder.
    pub fn cache_counter(&self, cache: &str, event: &str) -> IntCounter {
        self.cache_events.with_label_values(&[cache, event])
    }

    /// Every family in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("writing to memory does not fail");
        String::from_utf8(text).expect("the text format is UTF-8")
    }
}
