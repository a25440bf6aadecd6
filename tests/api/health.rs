use idgate::config::BaseUrl;

use crate::helpers::{TestApp, TestDatabase, read};
use crate::on_both_databases;

on_both_databases!(
    health_and_readiness_answer,
    unknown_paths_and_methods_get_json_errors
);

/// Every answer carries the headers that keep browsers from sniffing it or leaking its URL, and
/// HSTS when the service is public over https; the SQLite file is its owner's alone.
#[actix_web::test]
async fn answers_and_the_store_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let database = TestDatabase::sqlite();
    let file = database.url.strip_prefix("sqlite://").unwrap().to_owned();
    let app = TestApp::spawn(database).await;
    for path in ["/healthz", "/nothing-here", "/scim/v2/Users"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            headers.get("x-content-type-options").unwrap(),
            "nosniff",
            "{path}"
        );
        assert_eq!(
            headers.get("referrer-policy").unwrap(),
            "no-referrer",
            "{path}"
        );
        assert!(
            headers.get("strict-transport-security").is_none(),
            "{path}: plain http"
        );
    }
    for suffix in ["", "-wal", "-shm"] {
        let mode = std::fs::metadata(format!("{file}{suffix}"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}{suffix}: {mode:o}");
    }

    let https = TestApp::spawn_with(TestDatabase::sqlite(), |settings| {
        settings.base_url = Some(BaseUrl::parse("https://idgate.example").unwrap());
    })
    .await;
    let response = https
        .client
        .get(https.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
}

async fn health_and_readiness_answer(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let mut request_ids = Vec::new();
    for path in ["/healthz", "/readyz", "/healthz"] {
        let response = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("an answer");
        let request_id = response
            .headers()
            .get("x-request-id")
            .expect("every response names its request");
        request_ids.push(request_id.to_str().unwrap().to_owned());
        assert_eq!(read(response).await.0, 200, "{path}");
    }
    request_ids.dedup();
    assert_eq!(request_ids.len(), 3, "each request has its own id");
}

async fn unknown_paths_and_methods_get_json_errors(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let (status, body) = read(app.client.get(app.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");

    // A workspace's API answers who is calling first (see `auth::gate`), then the method.
    let tenant = app.tenant("acme", "workspace:read");
    let (status, body) = read(
        app.client
            .delete(app.url("/api/v1/workspaces/acme"))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(body["error"], "method_not_allowed");
}
