//! Managing tokens through the admin API.

use serde_json::json;

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_databases;

on_both_databases!(
    a_created_token_is_shown_once_and_works,
    a_token_cannot_grant_scopes_it_lacks,
    bad_token_requests_are_400_and_create_nothing,
    revoking_is_idempotent_and_audited_once,
);

const TOKENS: &str = "/api/v1/workspaces/acme/tokens";

async fn a_created_token_is_shown_once_and_works(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "tokens:write,workspace:read,audit:read");
    let request =
        json!({"name": "okta provisioning", "scopes": ["workspace:read"], "expires_in": "90d"});
    let (status, created) = app.send_json("POST", TOKENS, &admin.token, &request).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "okta provisioning");
    assert_eq!(created["scopes"], json!(["workspace:read"]));
    assert_eq!(created["status"], "active");
    let expires = idgate::time::parse_rfc3339(created["expires_at"].as_str().unwrap()).unwrap();
    let ninety_days = idgate::time::now() + chrono::TimeDelta::days(90);
    assert!(
        (ninety_days - expires).num_seconds().abs() < 60,
        "{created}"
    );

    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with(&format!("idg_{}_", created["id"].as_str().unwrap())));
    let (status, workspace) = app.get("/api/v1/workspaces/acme", secret).await;
    assert_eq!((status, workspace["slug"].as_str()), (200, Some("acme")));

    let (_, listed) = app.get(TOKENS, &admin.token).await;
    let listed = listed["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|token| token.get("secret").is_none() && token.get("secret_hash").is_none())
    );
    assert!(
        !serde_json::to_string(listed)
            .unwrap()
            .contains(&secret[37..]),
        "the secret is never listed"
    );
}

async fn a_token_cannot_grant_scopes_it_lacks(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "tokens:write,workspace:read");
    let request = json!({"scopes": ["workspace:read", "scim", "audit:read"]});
    let (status, body) = app.send_json("POST", TOKENS, &admin.token, &request).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        "a token cannot be given scopes its creator lacks: scim,audit:read"
    );
    let (_, listed) = app.get(TOKENS, &admin.token).await;
    assert_eq!(
        listed["tokens"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}

async fn bad_token_requests_are_400_and_create_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "tokens:write,workspace:read,scim");
    let bad = [
        json!({"scopes": []}),
        json!({"scopes": ["root"]}),
        json!({"scopes": "scim"}),
        json!({"scopes": ["scim"], "expires_in": "tomorrow"}),
        json!({"scopes": ["scim"], "expires_in": "0s"}),
        json!({"scopes": ["scim"], "name": ""}),
        json!({"scopes": ["scim"], "name": "x".repeat(101)}),
        json!({"scopes": ["scim"], "admin": true}),
        json!({"name": "no scopes"}),
    ];
    for request in bad {
        let (status, body) = app.send_json("POST", TOKENS, &admin.token, &request).await;
        assert_eq!(status, 400, "{request} -> {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    let response = app
        .client
        .post(app.url(TOKENS))
        .bearer_auth(&admin.token)
        .insert_header(("Content-Type", "application/json"))
        .send_body("{\"scopes\": [")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, listed) = app.get(TOKENS, &admin.token).await;
    assert_eq!(
        listed["tokens"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}

async fn revoking_is_idempotent_and_audited_once(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "tokens:write,audit:read");
    let other = app.token_for(&admin.workspace, "scim");
    let path = format!("{TOKENS}/{}", other.token.id);
    for _ in 0..2 {
        let (status, _) = app
            .send_json("DELETE", &path, &admin.token, &json!({}))
            .await;
        assert_eq!(status, 204);
    }
    let (_, listed) = app.get(TOKENS, &admin.token).await;
    let revoked = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == other.token.id.as_str())
        .unwrap();
    assert_eq!(revoked["status"], "revoked");

    let (_, audit) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=token.revoked",
            &admin.token,
        )
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(
        events[0]["actor"],
        json!({"type": "token", "id": admin.token_id})
    );
    assert_eq!(
        events[0]["target"],
        json!({"type": "token", "id": other.token.id})
    );
    assert!(events[0]["request_id"].is_string());

    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("{TOKENS}/nope"),
            &admin.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
}
