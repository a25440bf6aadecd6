//! The audit log: written with each change, never rewritten, filtered, paged and exported.

use std::collections::HashSet;

use idgate::db::Backend;
use serde_json::{Value, json};

use crate::helpers::{Tenant, TestApp, TestDatabase};
use crate::on_both_databases;

on_both_databases!(
    pages_follow_the_cursor_without_gaps_or_repeats,
    filters_narrow_the_log,
    an_event_names_the_request_that_made_it,
    bad_queries_are_400,
    exports_stream_every_matching_event,
    a_change_whose_audit_entry_fails_is_rolled_back,
    the_log_refuses_updates_and_deletes,
);

const AUDIT: &str = "/api/v1/workspaces/acme/audit";

/// A workspace whose token has made `count` tokens through the API: the log then holds the CLI's
/// `workspace.created` and `token.created`, then `count` token creations by the token.
async fn busy_tenant(app: &TestApp, count: usize) -> Tenant {
    let tenant = app.tenant("acme", "tokens:write,audit:read,scim");
    for n in 0..count {
        let request = json!({"name": format!("token {n}"), "scopes": ["scim"]});
        let (status, _) = app
            .send_json(
                "POST",
                "/api/v1/workspaces/acme/tokens",
                &tenant.token,
                &request,
            )
            .await;
        assert_eq!(status, 201);
    }
    tenant
}

fn events(body: &Value) -> &Vec<Value> {
    body["events"].as_array().expect("an events array")
}

/// An event carries the id of the request that made it, the one its response answered in
/// `X-Request-Id`.
async fn an_event_names_the_request_that_made_it(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "tokens:write,audit:read,scim");
    let response = awc::Client::default()
        .post(app.url("/api/v1/workspaces/acme/tokens"))
        .bearer_auth(&tenant.token)
        .send_json(&json!({"name": "traced", "scopes": ["scim"]}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("the response names its request")
        .to_str()
        .unwrap()
        .to_owned();

    let (_, log) = app
        .get(&format!("{AUDIT}?action=token.created"), &tenant.token)
        .await;
    let made: Vec<&Value> = events(&log)
        .iter()
        .filter(|event| event["actor"]["id"] == tenant.token_id.as_str())
        .collect();
    assert_eq!(made.len(), 1, "{log}");
    assert_eq!(made[0]["request_id"], request_id.as_str());
}

async fn pages_follow_the_cursor_without_gaps_or_repeats(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = busy_tenant(&app, 7).await;
    let mut ids = Vec::new();
    let mut path = format!("{AUDIT}?limit=3");
    loop {
        let (status, page) = app.get(&path, &tenant.token).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            events(&page)
                .iter()
                .map(|event| event["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{AUDIT}?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 9, "{ids:?}");
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {ids:?}"
    );

    let (_, all) = app.get(AUDIT, &tenant.token).await;
    let oldest = events(&all).last().unwrap();
    assert_eq!(oldest["action"], "workspace.created");
    assert_eq!(oldest["actor"], json!({"type": "system", "id": "cli"}));
    assert_eq!(
        oldest["target"],
        json!({"type": "workspace", "id": tenant.workspace.id})
    );
    assert_eq!(oldest["workspace_id"], tenant.workspace.id.as_str());
}

async fn filters_narrow_the_log(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = busy_tenant(&app, 3).await;
    let other = app.tenant("globex", "audit:read");
    let count = |body: &Value| events(body).len();

    let by_token = app
        .get(
            &format!("{AUDIT}?actor=token:{}", tenant.token_id),
            &tenant.token,
        )
        .await
        .1;
    assert_eq!(count(&by_token), 3);
    assert!(
        events(&by_token)
            .iter()
            .all(|e| e["action"] == "token.created" && e["request_id"].is_string())
    );
    assert_eq!(
        count(
            &app.get(&format!("{AUDIT}?actor=system"), &tenant.token)
                .await
                .1
        ),
        2
    );
    assert_eq!(
        count(
            &app.get(&format!("{AUDIT}?actor=token"), &tenant.token)
                .await
                .1
        ),
        3
    );
    assert_eq!(
        count(
            &app.get(&format!("{AUDIT}?action=workspace.created"), &tenant.token)
                .await
                .1
        ),
        1
    );
    let target = format!("{AUDIT}?target=token:{}", tenant.token_id);
    assert_eq!(count(&app.get(&target, &tenant.token).await.1), 1);
    assert_eq!(
        count(
            &app.get(&format!("{AUDIT}?target=token&actor=system"), &tenant.token)
                .await
                .1
        ),
        1
    );

    assert_eq!(
        count(
            &app.get(
                &format!("{AUDIT}?since=2000-01-01T00:00:00Z"),
                &tenant.token
            )
            .await
            .1
        ),
        5
    );
    assert_eq!(
        count(
            &app.get(
                &format!("{AUDIT}?since=2999-01-01T00:00:00Z"),
                &tenant.token
            )
            .await
            .1
        ),
        0
    );
    assert_eq!(
        count(
            &app.get(
                &format!("{AUDIT}?until=2000-01-01T00:00:00%2B02:00"),
                &tenant.token
            )
            .await
            .1
        ),
        0
    );
    assert_eq!(
        count(
            &app.get(
                &format!("{AUDIT}?until=2999-01-01T00:00:00Z"),
                &tenant.token
            )
            .await
            .1
        ),
        5
    );

    // Each workspace sees only its own events.
    let (_, theirs) = app
        .get("/api/v1/workspaces/globex/audit", &other.token)
        .await;
    assert_eq!(count(&theirs), 2);
    assert!(
        events(&theirs)
            .iter()
            .all(|e| e["workspace_id"] == other.workspace.id.as_str())
    );
}

async fn bad_queries_are_400(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "audit:read");
    for query in [
        "actions=token.created",
        "actor=:x",
        "target=token:",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=abc",
        "format=csv",
    ] {
        let (status, body) = app.get(&format!("{AUDIT}?{query}"), &tenant.token).await;
        assert_eq!(status, 400, "{query} -> {body}");
        assert!(body["message"].is_string(), "{body}");
    }
    for query in [
        "",
        "format=xml",
        "format=csv&limit=5",
        "format=jsonl&cursor=1",
    ] {
        let (status, _) = app
            .get(&format!("{AUDIT}/export?{query}"), &tenant.token)
            .await;
        assert_eq!(status, 400, "{query}");
    }
}

async fn exports_stream_every_matching_event(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = busy_tenant(&app, 4).await;
    let fetch = |query: &'static str| {
        let request = app
            .client
            .get(app.url(&format!("{AUDIT}/export?{query}")))
            .bearer_auth(&tenant.token);
        async move {
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let content_type = response
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let body = response.body().limit(10 << 20).await.unwrap();
            (content_type, String::from_utf8(body.to_vec()).unwrap())
        }
    };

    let (content_type, jsonl) = fetch("format=jsonl").await;
    assert_eq!(content_type, "application/x-ndjson");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .windows(2)
            .all(|pair| pair[0]["id"].as_i64() < pair[1]["id"].as_i64()),
        "oldest first"
    );
    assert_eq!(lines[0]["action"], "workspace.created");

    let (content_type, csv) = fetch("format=csv&actor=system").await;
    assert!(content_type.starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>()[..3],
        ["id", "time", "workspace_id"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[1][5], "token.created");
    let details: Value = serde_json::from_str(&rows[1][8]).unwrap();
    assert_eq!(
        details["scopes"],
        json!(["scim", "audit:read", "tokens:write"])
    );
}

/// A failing audit insert must undo the change it describes: both are one transaction.
async fn a_change_whose_audit_entry_fails_is_rolled_back(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "tokens:write,workspace:read,workspace:write");
    let victim = app.token_for(&tenant.workspace, "workspace:read");
    let refuse_inserts = match app.database.backend {
        Backend::Sqlite => {
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
                           BEGIN SELECT RAISE(ABORT, 'audit store down'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ \
                              BEGIN RAISE EXCEPTION 'audit store down'; END; $$ LANGUAGE plpgsql; \
                              CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
                              FOR EACH ROW EXECUTE FUNCTION refuse_audit();"
        }
    };
    app.database.execute(refuse_inserts).unwrap();

    let path = format!("/api/v1/workspaces/acme/tokens/{}", victim.token.id);
    let (status, body) = app
        .send_json("DELETE", &path, &tenant.token, &json!({}))
        .await;
    assert_eq!(status, 500);
    assert_eq!(body["message"], "internal error", "no detail leaks: {body}");
    assert_eq!(
        app.get("/api/v1/workspaces/acme", &victim.secret).await.0,
        200,
        "still not revoked"
    );

    let (status, _) = app
        .send_json(
            "PATCH",
            "/api/v1/workspaces/acme",
            &tenant.token,
            &json!({"hipaa": true}),
        )
        .await;
    assert_eq!(status, 500);
    let (_, workspace) = app.get("/api/v1/workspaces/acme", &tenant.token).await;
    assert_eq!(workspace["hipaa"], false, "still not HIPAA");

    let (status, _) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/tokens",
            &tenant.token,
            &json!({"scopes": ["workspace:read"]}),
        )
        .await;
    assert_eq!(status, 500);
    let (_, tokens) = app
        .get("/api/v1/workspaces/acme/tokens", &tenant.token)
        .await;
    assert_eq!(
        tokens["tokens"].as_array().unwrap().len(),
        2,
        "no token was created"
    );
}

async fn the_log_refuses_updates_and_deletes(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    app.tenant("acme", "audit:read");
    let update = app
        .database
        .execute("UPDATE audit_events SET action = 'nothing.happened'");
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = app.database.execute("DELETE FROM audit_events");
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    let mut seen = HashSet::new();
    let tenant_token = app.token_for(
        &idgate::workspaces::find_by_slug(&mut app.database.connect(), "acme").unwrap(),
        "audit:read",
    );
    for event in events(&app.get(AUDIT, &tenant_token.secret).await.1) {
        seen.insert(event["action"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        HashSet::from(["workspace.created".to_owned(), "token.created".to_owned()])
    );
}
