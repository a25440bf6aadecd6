//! Reading and changing a workspace through the admin API.

use serde_json::json;

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_databases;

on_both_databases!(
    a_workspace_is_read_and_changed,
    bad_changes_are_400_and_change_nothing
);

const WORKSPACE: &str = "/api/v1/workspaces/acme";

async fn a_workspace_is_read_and_changed(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let (status, before) = app.get(WORKSPACE, &tenant.token).await;
    assert_eq!(status, 200);
    assert_eq!(before["id"], tenant.workspace.id.as_str());
    assert_eq!(
        (
            before["slug"].as_str(),
            before["name"].as_str(),
            before["hipaa"].as_bool()
        ),
        (Some("acme"), Some("acme"), Some(false))
    );

    let (status, after) = app
        .send_json(
            "PATCH",
            WORKSPACE,
            &tenant.token,
            &json!({"hipaa": true, "name": "Acme Health"}),
        )
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        (after["hipaa"].as_bool(), after["name"].as_str()),
        (Some(true), Some("Acme Health"))
    );
    assert_eq!(
        app.get(WORKSPACE, &tenant.token).await.1,
        after,
        "the change is stored"
    );

    // The same values again change nothing and record nothing.
    app.send_json("PATCH", WORKSPACE, &tenant.token, &json!({"hipaa": true}))
        .await;
    let (_, audit) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=workspace.updated",
            &tenant.token,
        )
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(
        events[0]["details"],
        json!({"changes": {"hipaa": {"from": false, "to": true}, "name": {"from": "acme", "to": "Acme Health"}}})
    );
}

async fn bad_changes_are_400_and_change_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    for body in [
        json!({"hipaa": "yes"}),
        json!({"name": " "}),
        json!({"slug": "other"}),
        json!({"name": "a\u{7}b"}),
    ] {
        let (status, answer) = app
            .send_json("PATCH", WORKSPACE, &tenant.token, &body)
            .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(answer["message"].is_string());
    }
    let (_, workspace) = app.get(WORKSPACE, &tenant.token).await;
    assert_eq!(
        (workspace["name"].as_str(), workspace["hipaa"].as_bool()),
        (Some("acme"), Some(false))
    );
    let (_, audit) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=workspace.updated",
            &tenant.token,
        )
        .await;
    assert_eq!(audit["events"], json!([]));
}
