//! Hostile bodies to every endpoint that reads one: malformed JSON, wrong types, huge numbers, deep
//! nesting, invalid UTF-8 and odd Content-Types. Every answer is a 4xx with the endpoint's error
//! body, never a 5xx, and nothing changes (the audit log and the access version stay as they were).

use awc::http::Method;
use awc::http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase};
use crate::on_both_databases;

on_both_databases!(
    hostile_bodies_get_a_4xx_and_change_nothing,
    costly_filters_are_refused_and_a_query_stops_at_its_budget,
);

/// What an endpoint answers errors with.
#[derive(Clone, Copy, Debug)]
enum Errors {
    /// `{"error", "message"}`
    Json,
    /// A SCIM Error: `schemas` and `status`.
    Scim,
    /// A short plain-text page (browser-facing SAML endpoints).
    Text,
}

fn bodies() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    let json = Some("application/json");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(2000), "}".repeat(2000));
    vec![
        ("truncated", b"{\"name\": ".to_vec(), json),
        ("array", b"[]".to_vec(), json),
        ("string", b"\"text\"".to_vec(), json),
        ("null", b"null".to_vec(), json),
        ("wrong types", br#"{"name": 5, "roles": "admin", "userName": [], "schemas": 7, "Operations": {}, "kind": false, "options": 3, "checks": "x", "to": 1}"#.to_vec(), json),
        ("huge number", br#"{"name": 123456789012345678901234567890123456789, "expires_in": 1e999, "level": 1e400}"#.to_vec(), json),
        ("deep array", deep.into_bytes(), json),
        ("deep object", deep_object.into_bytes(), json),
        ("invalid UTF-8", b"{\"name\": \"\xff\xfe\xfd\"}".to_vec(), json),
        ("no content type", b"{\"name\": \"x\"}".to_vec(), None),
        ("xml", b"<name>x</name>".to_vec(), Some("application/xml")),
        ("form", b"name=x".to_vec(), Some("application/x-www-form-urlencoded")),
        ("bad charset", b"{\"name\": ".to_vec(), Some("application/json; charset=ebcdic")),
        ("empty", Vec::new(), json),
    ]
}

async fn hostile_bodies_get_a_4xx_and_change_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant(
        "acme",
        "scim,workspace:read,workspace:write,audit:read,tokens:write,sources:read,sources:write,tracking_plan:read,tracking_plan:write",
    );
    // Something to aim at: a user, a group, a source.
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ada@example.com"});
    let (_, user) = app
        .send_json("POST", "/scim/v2/Users", &tenant.token, &user)
        .await;
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"});
    let (_, group) = app
        .send_json("POST", "/scim/v2/Groups", &tenant.token, &group)
        .await;
    let source = json!({"kind": "source", "name": "web"});
    let (_, source) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/resources",
            &tenant.token,
            &source,
        )
        .await;
    let (user, group, source) = (
        user["id"].as_str().unwrap().to_owned(),
        group["id"].as_str().unwrap().to_owned(),
        source["id"].as_str().unwrap().to_owned(),
    );
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let endpoints: Vec<(&str, String, Errors)> = vec![
        ("PATCH", api(""), Errors::Json),
        ("POST", api("/tokens"), Errors::Json),
        ("PUT", api("/members/ada@example.com/roles"), Errors::Json),
        ("PUT", api("/group-mappings/Engineering"), Errors::Json),
        ("PUT", api("/attribute-mapping"), Errors::Json),
        ("POST", api("/resources"), Errors::Json),
        ("PATCH", api(&format!("/resources/{source}")), Errors::Json),
        ("POST", api("/grants"), Errors::Json),
        ("POST", api("/authorize"), Errors::Json),
        ("PUT", api("/idp"), Errors::Json),
        ("POST", api("/ownership/transfer"), Errors::Json),
        ("POST", "/api/v1/write-keys/verify".to_owned(), Errors::Json),
        ("POST", "/scim/v2/Users".to_owned(), Errors::Scim),
        ("PUT", format!("/scim/v2/Users/{user}"), Errors::Scim),
        ("PATCH", format!("/scim/v2/Users/{user}"), Errors::Scim),
        ("POST", "/scim/v2/Groups".to_owned(), Errors::Scim),
        ("PATCH", format!("/scim/v2/Groups/{group}"), Errors::Scim),
        ("POST", "/scim/v2/Bulk".to_owned(), Errors::Scim),
        ("POST", "/scim/v2/.search".to_owned(), Errors::Scim),
        ("POST", "/saml/acme/acs".to_owned(), Errors::Text),
    ];
    let state = || {
        let mut conn = app.database.connect();
        use diesel::prelude::*;
        use idgate::db::schema::{audit_events, workspaces};
        // Refused SCIM writes are noted in the log for the console (as refused, not as changes).
        let events: i64 = audit_events::table
            .filter(audit_events::action.ne("scim.request.refused"))
            .count()
            .get_result(&mut *conn)
            .unwrap();
        let version: i64 = workspaces::table
            .select(workspaces::access_version)
            .first(&mut *conn)
            .unwrap();
        (events, version)
    };
    let before = state();
    for (method, path, errors) in &endpoints {
        for (name, body, content_type) in bodies() {
            let mut request = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(path),
                )
                .bearer_auth(&tenant.token);
            if let Some(content_type) = content_type {
                request = request.insert_header((CONTENT_TYPE, content_type));
            }
            let mut response = request.send_body(body).await.unwrap();
            let status = response.status().as_u16();
            let answer = response.body().limit(1 << 20).await.unwrap();
            let what = format!("{method} {path} with {name}: {status} {answer:?}");
            assert!((400..500).contains(&status), "{what}");
            match errors {
                Errors::Json => {
                    let body: Value = serde_json::from_slice(&answer).expect(&what);
                    assert!(
                        body["error"].is_string() && body["message"].is_string(),
                        "{what}"
                    );
                }
                Errors::Scim => {
                    let body: Value = serde_json::from_slice(&answer).expect(&what);
                    assert_eq!(
                        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                        "{what}"
                    );
                    assert_eq!(body["status"], status.to_string(), "{what}");
                }
                Errors::Text => assert!(!answer.is_empty(), "{what}"),
            }
        }
    }
    assert_eq!(state(), before, "nothing changed");
}

/// Heads past idgate's caps are refused with their status and a JSON error before any work.
#[actix_web::test]
async fn oversized_urls_and_headers_are_refused() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let tenant = app.tenant("acme", "scim");
    let get = |path: String, padding: Option<String>| {
        let mut request = app.client.get(app.url(&path)).bearer_auth(&tenant.token);
        if let Some(padding) = padding {
            request = request.insert_header(("X-Padding", padding));
        }
        async move {
            let mut response = request.send().await.unwrap();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
    };
    let limit = idgate::limits::MAX_URL_BYTES;
    let long_query = |length: usize| format!("/scim/v2/Users?filter={}", "a".repeat(length));
    // Just under the cap the request is served (a 400 for the nonsense filter), just over it not.
    let (status, _) = get(long_query(limit - 100), None).await;
    assert_eq!(status, 400);
    let (status, body) = get(long_query(limit), None).await;
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"], "uri_too_long");

    let limit = idgate::limits::MAX_HEADER_BYTES;
    let (status, _) = get("/scim/v2/Users".into(), Some("x".repeat(limit - 1000))).await;
    assert_eq!(status, 200);
    let (status, body) = get("/scim/v2/Users".into(), Some("x".repeat(limit))).await;
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"], "headers_too_large");
}

/// A client that starts a request and never finishes its head is answered 408 and disconnected,
/// not left holding the connection.
/// Sends `request` on a raw connection, sends nothing more, and returns what the server answers
/// before it closes the connection, and how long that took.
async fn answer_to_an_unfinished(app: &TestApp, request: &[u8]) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    // Reading to the end waits for the server to close the connection.
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection")
    .unwrap();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[actix_web::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let (answer, waited) = answer_to_an_unfinished(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(waited < idgate::limits::REQUEST_HEAD_TIMEOUT * 2);
}

#[actix_web::test]
async fn a_client_that_never_finishes_its_body_is_cut_off() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let tenant = app.tenant("acme", "scim");
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 1000\r\n\r\n{{\"userName\": ",
        tenant.token
    );
    let (answer, waited) = answer_to_an_unfinished(&app, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{answer}"
    );
    assert!(waited >= idgate::limits::REQUEST_BODY_TIMEOUT);
    assert!(waited < idgate::limits::REQUEST_BODY_TIMEOUT * 2);
    // The server is still there for honest clients, and nothing was created.
    let (status, users) = app.get("/scim/v2/Users", &tenant.token).await;
    assert_eq!(status, 200);
    assert_eq!(users["totalResults"], 0);
}

/// A filter's cost is the client's to choose: too many comparisons are refused before any query,
/// value filters cost one lookup per element, and a query that runs long ends at its budget.
async fn costly_filters_are_refused_and_a_query_stops_at_its_budget(database: TestDatabase) {
    use idgate::db::StoreError;
    use idgate::db::budget::{WITHIN_BUDGET, within};
    use std::time::{Duration, Instant};

    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    for n in 0..3 {
        let user = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("user{n}"),
            "emails": [{"value": format!("user{n}@example.com"), "type": "work"}],
        });
        let (status, body) = app
            .send_json("POST", "/scim/v2/Users", &tenant.token, &user)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let list = |filter: String| {
        let app = &app;
        let token = tenant.token.clone();
        async move {
            let query: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
            app.get(&format!("/scim/v2/Users?filter={query}"), &token)
                .await
        }
    };
    // About 120 or-ed terms used to reach the database and fail there with a 500.
    let many = (0..120)
        .map(|n| format!("userName eq \"user{n}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let (status, refused) = list(many).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["scimType"], "invalidFilter", "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("comparisons"));
    // Negated value filters, or-ed, answer correctly.
    let negated = (0..3)
        .map(|n| format!("emails[not (value co \"user{n}@\")]"))
        .collect::<Vec<_>>()
        .join(" and ");
    let (status, none) = list(negated).await;
    assert_eq!(
        (status, none["totalResults"].clone()),
        (200, json!(0)),
        "{none}"
    );
    let (status, two) =
        list("emails[not (value co \"user0@\")] or emails[not (value co \"user0@\")]".to_owned())
            .await;
    assert_eq!(
        (status, two["totalResults"].clone()),
        (200, json!(2)),
        "{two}"
    );

    // A resource keeps at most 100 values of one attribute, however they arrive.
    let emails = |range: std::ops::Range<usize>| -> Vec<Value> {
        range
            .map(|n| json!({"value": format!("alias{n}@example.com")}))
            .collect()
    };
    let crowded = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "crowded",
        "emails": emails(0..101),
    });
    let (status, refused) = app
        .send_json("POST", "/scim/v2/Users", &tenant.token, &crowded)
        .await;
    assert_eq!(
        (status, refused["scimType"].clone()),
        (400, json!("tooMany"))
    );
    let mut full = crowded.clone();
    full["emails"] = json!(emails(0..100));
    let (status, created) = app
        .send_json("POST", "/scim/v2/Users", &tenant.token, &full)
        .await;
    assert_eq!(status, 201, "{created}");
    let add_one = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "emails", "value": emails(100..101)}],
    });
    let path = format!("/scim/v2/Users/{}", created["id"].as_str().unwrap());
    let (status, refused) = app.send_json("PATCH", &path, &tenant.token, &add_one).await;
    assert_eq!(
        (status, refused["scimType"].clone()),
        (400, json!("tooMany"))
    );

    // A query that would run for minutes ends at its budget, on either database.
    let mut conn = app.database.connect();
    let endless = match app.database.backend {
        idgate::db::Backend::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
             WHERE x < 10000000000 AND {WITHIN_BUDGET}) SELECT count(*) FROM c"
        ),
        idgate::db::Backend::Postgres => {
            format!("SELECT count(*) FROM generate_series(1, 10000000000) WHERE {WITHIN_BUDGET}")
        }
    };
    let started = Instant::now();
    let outcome = within(&mut conn, "acme", Duration::from_millis(200), |conn| {
        diesel::RunQueryDsl::execute(diesel::sql_query(&endless), conn).map_err(StoreError::from)
    });
    assert!(
        matches!(outcome, Err(StoreError::OverBudget)),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // One workspace runs at most three budgeted queries at once; others are not held up.
    let budget = Duration::from_secs(1);
    let nested = within(&mut conn, "busy", budget, |conn| {
        within(conn, "busy", budget, |conn| {
            within(conn, "busy", budget, |conn| {
                let fourth = within(conn, "busy", budget, |_| Ok::<_, StoreError>(()));
                let elsewhere = within(conn, "quiet", budget, |_| Ok::<_, StoreError>(()));
                Ok::<_, StoreError>((fourth, elsewhere))
            })
        })
    })
    .unwrap();
    assert!(
        matches!(nested, (Err(StoreError::CostlyQueriesRunning), Ok(()))),
        "{nested:?}"
    );
    assert!(within(&mut conn, "busy", budget, |_| Ok::<_, StoreError>(())).is_ok());
}
