use crate::helpers::{TestApp, TestDatabase, read};
use crate::on_both_databases;

on_both_databases!(
    health_and_readiness_answer,
    unknown_paths_and_methods_get_json_errors
);

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

    let (status, body) = read(
        app.client
            .delete(app.url("/api/v1/workspaces/acme"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(body["error"], "method_not_allowed");
}
