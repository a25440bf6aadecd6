//! Token authentication on the admin API: each way a token can be wrong, and what it is then told.

use diesel::prelude::*;
use idgate::db::schema::api_tokens;

use idgate::forwarded::TrustedProxies;

use crate::helpers::{TestApp, TestDatabase, read};
use crate::on_both_databases;

on_both_databases!(
    missing_and_malformed_tokens_are_401_with_a_challenge,
    unknown_ids_and_wrong_secrets_are_401,
    expired_tokens_are_401,
    revoked_tokens_are_401,
    a_token_without_the_scope_is_403,
    a_token_never_reaches_another_workspace,
    use_is_recorded_in_last_used_at,
    each_token_has_its_own_rate_limit_and_bad_tokens_spend_none,
    an_import_never_meets_the_default_limit_and_a_bulk_request_counts_once,
    replicas_on_postgres_share_each_callers_allowance,
    a_flood_of_bad_tokens_from_one_address_is_slowed,
    behind_a_trusted_proxy_a_flood_slows_only_the_client_that_sent_it,
    a_caller_who_does_not_authenticate_learns_nothing_of_the_request_they_sent,
);

const WORKSPACE: &str = "/api/v1/workspaces/acme";

async fn missing_and_malformed_tokens_are_401_with_a_challenge(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read");

    let response = app.client.get(app.url(WORKSPACE)).send().await.unwrap();
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"idgate\""
    );
    let (status, body) = read(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );

    let malformed = [
        format!("Basic {}", tenant.token),
        "Bearer".to_owned(),
        "Bearer not-a-token".to_owned(),
        format!("Bearer {}x", tenant.token),
    ];
    for header in malformed {
        let response = app
            .client
            .get(app.url(WORKSPACE))
            .insert_header(("Authorization", header.as_str()))
            .send()
            .await
            .unwrap();
        let challenge = response.headers().get("www-authenticate").cloned();
        let (status, body) = read(response).await;
        assert_eq!(status, 401, "{header}");
        assert_eq!(
            challenge.unwrap(),
            "Bearer realm=\"idgate\", error=\"invalid_token\""
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not of the form"),
            "{body}"
        );
    }
}

async fn unknown_ids_and_wrong_secrets_are_401(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read");
    assert_eq!(app.get(WORKSPACE, &tenant.token).await.0, 200);

    // The right id with another secret: only the hash comparison stands in the way.
    let (prefix, secret) = tenant.token.split_at(tenant.token.len() - 43);
    let other_secret = if secret.starts_with('A') {
        secret.replacen('A', "B", 1)
    } else {
        format!("A{}", &secret[1..])
    };
    let wrong_secret = format!("{prefix}{other_secret}");
    let unknown_id = format!("idg_{}_{secret}", "0".repeat(32));
    for token in [wrong_secret, unknown_id] {
        let (status, body) = app.get(WORKSPACE, &token).await;
        assert_eq!(status, 401, "{token}");
        assert_eq!(
            body["message"], "the token is not valid",
            "unknown ids and wrong secrets read the same"
        );
    }
}

async fn expired_tokens_are_401(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read");
    let past = idgate::time::now() - chrono::TimeDelta::seconds(1);
    diesel::update(api_tokens::table.find(&tenant.token_id))
        .set(api_tokens::expires_at.eq(past))
        .execute(&mut *app.database.connect())
        .unwrap();
    let (status, body) = app.get(WORKSPACE, &tenant.token).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("the token has expired"))
    );
}

async fn revoked_tokens_are_401(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "tokens:write,workspace:read");
    let other = app.token_for(&admin.workspace, "workspace:read");
    assert_eq!(app.get(WORKSPACE, &other.secret).await.0, 200);

    let path = format!("{WORKSPACE}/tokens/{}", other.token.id);
    let (status, _) = app
        .send_json("DELETE", &path, &admin.token, &serde_json::json!({}))
        .await;
    assert_eq!(status, 204);
    let (status, body) = app.get(WORKSPACE, &other.secret).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("the token has been revoked"))
    );
}

async fn a_token_without_the_scope_is_403(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim,audit:read");
    let (status, body) = app.get(WORKSPACE, &tenant.token).await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "this token lacks the workspace:read scope");
    let (status, _) = app
        .send_json(
            "PATCH",
            WORKSPACE,
            &tenant.token,
            &serde_json::json!({"hipaa": true}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.get(&format!("{WORKSPACE}/tokens"), &tenant.token)
            .await
            .0,
        403
    );
    assert_eq!(
        app.get(&format!("{WORKSPACE}/audit"), &tenant.token)
            .await
            .0,
        200
    );
}

async fn a_token_never_reaches_another_workspace(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let acme = app.tenant(
        "acme",
        "workspace:read,workspace:write,tokens:write,audit:read",
    );
    let globex = app.tenant("globex", "workspace:read,tokens:write");

    for path in [
        "/api/v1/workspaces/globex",
        "/api/v1/workspaces/globex/tokens",
        "/api/v1/workspaces/globex/audit",
    ] {
        let (status, body) = app.get(path, &acme.token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (status, _) = app
        .send_json(
            "PATCH",
            "/api/v1/workspaces/globex",
            &acme.token,
            &serde_json::json!({"hipaa": true}),
        )
        .await;
    assert_eq!(status, 404);

    // Revoking globex's token through acme's workspace finds nothing, and the token still works.
    let path = format!("{WORKSPACE}/tokens/{}", globex.token_id);
    let (status, _) = app
        .send_json("DELETE", &path, &acme.token, &serde_json::json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app.get("/api/v1/workspaces/globex", &globex.token).await;
    assert_eq!((status, body["hipaa"].as_bool()), (200, Some(false)));
}

async fn use_is_recorded_in_last_used_at(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,tokens:write");
    let (_, before) = app.get(&format!("{WORKSPACE}/tokens"), &tenant.token).await;
    let used = |body: &serde_json::Value| body["tokens"][0]["last_used_at"].clone();
    // This listing itself used the token, so it already shows a time.
    assert!(used(&before).is_string(), "{before}");
    let first_use = idgate::time::parse_rfc3339(used(&before).as_str().unwrap()).unwrap();
    assert!(idgate::time::now() - first_use < chrono::TimeDelta::seconds(30));
}

async fn each_token_has_its_own_rate_limit_and_bad_tokens_spend_none(database: TestDatabase) {
    // One request a second: a burst of 50, then 429.
    let app = TestApp::spawn_with_rate_limit(database, 1).await;
    let noisy = app.tenant("acme", "workspace:read,scim");
    let honest = app
        .token_for(&noisy.workspace, "workspace:read,scim")
        .secret;
    // A burst of bad secrets under the honest token's id: refused, and never counted.
    let id = honest.split('_').nth(1).unwrap();
    for _ in 0..50 {
        let forged = format!("idg_{id}_{}", "x".repeat(43));
        assert_eq!(app.get(WORKSPACE, &forged).await.0, 401);
    }
    // Fifty seconds of the rate pass as a burst; then 429 with Retry-After and the IETF
    // RateLimit fields, on the admin API and SCIM.
    let statuses = |token: String, path: &'static str, count: usize| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            for _ in 0..count {
                let response = app
                    .client
                    .get(app.url(path))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                seen.push(response.status().as_u16());
                if response.status() == 429 {
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .unwrap()
                        .to_str()
                        .unwrap();
                    assert!(retry.parse::<u64>().unwrap() >= 1, "{retry}");
                    let field =
                        |name: &str| response.headers().get(name).unwrap().to_str().unwrap();
                    assert_eq!(field("ratelimit-policy"), "\"burst\";q=50;w=50");
                    assert_eq!(field("ratelimit"), format!("\"burst\";r=0;t={retry}"));
                    break;
                }
            }
            seen
        }
    };
    let noisy_seen = statuses(noisy.token.clone(), WORKSPACE, 100).await;
    assert_eq!(noisy_seen[..50], [200; 50], "{noisy_seen:?}");
    assert_eq!(noisy_seen.last(), Some(&429), "{noisy_seen:?}");
    let (status, body) = app.get("/scim/v2/Users", &noisy.token).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["status"], "429");
    let (status, body) = app.get(WORKSPACE, &noisy.token).await;
    assert_eq!(
        (status, &body["error"]),
        (429, &serde_json::json!("rate_limited"))
    );
    // The honest token still has its whole allowance.
    assert_eq!(statuses(honest, "/scim/v2/Users", 10).await, [200; 10]);
}

/// Okta and Entra send thousands of requests back to back during an import, over several
/// connections: with the default settings none is refused. A `/Bulk` request counts once.
async fn an_import_never_meets_the_default_limit_and_a_bulk_request_counts_once(
    database: TestDatabase,
) {
    let default_rate = idgate::config::Settings::default().rate_limit;
    let app = TestApp::spawn_with(database, |settings| settings.rate_limit = default_rate).await;
    let tenant = app.tenant("acme", "scim");
    let connection = |_| {
        let (app, token) = (&app, tenant.token.clone());
        async move {
            let mut refused = 0;
            for _ in 0..250 {
                let (status, _) = app.get("/scim/v2/Users?count=1", &token).await;
                assert!(matches!(status, 200 | 429), "{status}");
                refused += usize::from(status == 429);
            }
            refused
        }
    };
    let refused: Vec<usize> = futures_util::future::join_all((0..8).map(connection)).await;
    assert_eq!(
        refused, [0; 8],
        "2,000 back-to-back requests from one token"
    );

    // At one request a second (a burst of 50), a Bulk of 100 operations is one request.
    let database = app.database;
    let app = TestApp::spawn_with_rate_limit(database, 1).await;
    let operations: Vec<serde_json::Value> = (0..100)
        .map(|n| {
            serde_json::json!({
                "method": "POST",
                "path": "/Users",
                "bulkId": format!("u{n}"),
                "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("bulk{n}")},
            })
        })
        .collect();
    let bulk = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": operations,
    });
    let (status, answer) = app
        .send_json("POST", "/scim/v2/Bulk", &tenant.token, &bulk)
        .await;
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201"; 100]);
}

/// A replica's heartbeat writes only the `replicas` table, which no memo reads, so it must not move
/// the data version: told, every beat (each replica's, every two seconds) made every replica drop
/// its kept pages' counts and count a large workspace again.
#[actix_web::test]
async fn a_replicas_heartbeat_leaves_what_is_kept() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let store = idgate::db::Store::open(&database.database_url()).unwrap();
    let mut waited = 0;
    while store.data_version().is_none() {
        waited += 1;
        assert!(waited < 200, "the change watch never started");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Other tests' commits to the same PostgreSQL database move this version too, so a beat can
    // share its moment with one of theirs; a beat that leaves the version shows beats tell nobody.
    let mut beats = 0;
    loop {
        let before = store.data_version();
        let alive = idgate::replicas::beat(&store, "here").await.unwrap();
        assert_eq!(alive, 1);
        if store.data_version() == before {
            break;
        }
        beats += 1;
        assert!(beats < 50, "each of {beats} beats moved the data version");
    }
}

/// Several `idgate serve` on one PostgreSQL are one service: a caller spreading requests over
/// two replicas gets one allowance between them, not one from each. (On SQLite one process
/// serves: it counts itself alone.)
async fn replicas_on_postgres_share_each_callers_allowance(database: TestDatabase) {
    let shared = database.backend == idgate::db::Backend::Postgres;
    // One request a second: a burst of 50 for the whole service.
    let app = TestApp::spawn_with_rate_limit(database, 1).await;
    let tenant = app.tenant("acme", "scim");
    let replica = app.spawn_replica_with_rate_limit(1).await;
    let counted = |base: String| {
        let client = app.client.clone();
        async move {
            let response = client.get(format!("{base}/readyz")).send().await.unwrap();
            read(response).await.1["replicas"].as_u64().unwrap()
        }
    };
    let expected = if shared { 2 } else { 1 };
    // Each replica beats every two seconds: wait until both count each other.
    let mut waited = 0;
    while counted(app.url("")).await != expected || counted(replica.clone()).await != expected {
        waited += 1;
        assert!(waited < 100, "the replicas never counted {expected}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if !shared {
        return;
    }
    let mut accepted = 0;
    let mut refused = [false, false];
    let bases = [app.url(""), replica];
    for turn in 0..400 {
        let side = turn % 2;
        let response = app
            .client
            .get(format!("{}/scim/v2/Users?count=1", bases[side]))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => refused[side] = true,
            other => panic!("{other}"),
        }
        if refused == [true, true] {
            break;
        }
    }
    assert_eq!(refused, [true, true], "both replicas refuse in the end");
    // The burst of 50 between them, and the odd cell the rate refilled meanwhile.
    assert!(
        (50..=56).contains(&accepted),
        "{accepted} accepted across two replicas"
    );
}

/// Bad tokens are never counted against a real token, but a flood of them from one client address
/// is: past the address's burst, 429. A valid token from the same address is not held up.
async fn a_flood_of_bad_tokens_from_one_address_is_slowed(database: TestDatabase) {
    let app = TestApp::spawn_with_rate_limit(database, 1).await;
    let tenant = app.tenant("acme", "workspace:read,scim");
    let forged = format!("idg_{}_{}", "0".repeat(32), "x".repeat(43));
    let mut unauthorized = 0;
    loop {
        let (status, body) = app.get("/scim/v2/Users", &forged).await;
        match status {
            401 => unauthorized += 1,
            429 => break,
            other => panic!("{other}: {body}"),
        }
        assert!(unauthorized <= 1000, "never slowed");
    }
    assert!(
        unauthorized >= 200,
        "the address's burst is answered 401: {unauthorized}"
    );
    // The admin API counts against the same allowance; valid tokens are not held up anywhere.
    let (status, body) = app.get(WORKSPACE, &forged).await;
    assert_eq!(
        (status, &body["error"]),
        (429, &serde_json::json!("rate_limited"))
    );
    assert_eq!(app.get("/scim/v2/Users", &tenant.token).await.0, 200);
    assert_eq!(app.get(WORKSPACE, &tenant.token).await.0, 200);
}

/// Behind a load balancer every client's peer address is the balancer's. With the balancer named
/// in `trusted_proxies`, a flood of bad tokens from one client slows that client alone: another
/// client's sign-in and bad tokens pass, and the flooding client cannot escape by writing
/// addresses of its own to the left of what the balancer appends. Without it (the default), the
/// header is not believed: anyone could name a new address with each request.
async fn behind_a_trusted_proxy_a_flood_slows_only_the_client_that_sent_it(database: TestDatabase) {
    let app = TestApp::spawn_with(database, |settings| {
        settings.rate_limit = 1;
        settings.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
    })
    .await;
    app.tenant("acme", "workspace:read,scim");
    let forged = format!("idg_{}_{}", "0".repeat(32), "x".repeat(43));
    let from = |client: &str, path: &str| {
        app.client
            .get(app.url(path))
            .bearer_auth(&forged)
            .insert_header(("X-Forwarded-For", client.to_owned()))
    };
    let mut unauthorized = 0;
    loop {
        match from("203.0.113.9", "/scim/v2/Users")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        {
            401 => unauthorized += 1,
            429 => break,
            other => panic!("{other}"),
        }
        assert!(unauthorized <= 1000, "never slowed");
    }
    let status = |request: awc::ClientRequest| async move {
        request.send().await.unwrap().status().as_u16()
    };
    // The address's allowance refills at 20 a second: a drained client meets 429 again within a
    // few requests, however slowly this machine sends them.
    let held_back = |request: &dyn Fn() -> awc::ClientRequest| {
        let requests: Vec<awc::ClientRequest> = (0..20).map(|_| request()).collect();
        async move {
            for request in requests {
                if status(request).await == 429 {
                    return true;
                }
            }
            false
        }
    };
    assert!(held_back(&|| from("203.0.113.9", "/saml/acme/login")).await);
    assert!(
        held_back(&|| from("1.1.1.1, 203.0.113.9", "/scim/v2/Users")).await,
        "what the client wrote itself is not believed"
    );
    let forwarded = || {
        app.client
            .get(app.url("/saml/acme/login"))
            .insert_header(("Forwarded", "for=203.0.113.9;proto=https"))
    };
    assert!(
        held_back(&forwarded).await,
        "Forwarded names the client too"
    );
    assert_ne!(status(from("198.51.100.7", "/saml/acme/login")).await, 429);
    assert_eq!(status(from("198.51.100.7", "/scim/v2/Users")).await, 401);

    // By default no proxy is trusted: the same flood with a new address each time is the peer's.
    let direct = TestApp::spawn_with_rate_limit(TestDatabase::sqlite(), 1).await;
    direct.tenant("acme", "workspace:read,scim");
    let mut sent = 0;
    loop {
        let request = direct
            .client
            .get(direct.url("/scim/v2/Users"))
            .bearer_auth(&forged)
            .insert_header(("X-Forwarded-For", format!("203.0.113.{}", sent % 250)));
        match request.send().await.unwrap().status().as_u16() {
            401 => sent += 1,
            429 => break,
            other => panic!("{other}"),
        }
        assert!(
            sent <= 1000,
            "a new forwarded address each time escaped the limit"
        );
    }
}

/// Every route of a workspace's admin API and of SCIM answers a caller that does not authenticate
/// (no token, a malformed one, a well-formed one that does not exist, another workspace's) with
/// 401 (404 for another workspace's, as if it did not exist), never with what is wrong with the
/// body or the query it sent: the token is checked before either is read or judged.
async fn a_caller_who_does_not_authenticate_learns_nothing_of_the_request_they_sent(
    database: TestDatabase,
) {
    let app = TestApp::spawn(database).await;
    app.tenant("acme", "workspace:read");
    let other = app.tenant(
        "other",
        "workspace:write,tokens:write,scim,audit:read,sources:write",
    );
    let id = "0".repeat(32);
    let admin = [
        "",
        "/members",
        "/members/ann/permissions",
        "/members/ann/roles",
        "/group-mappings",
        "/group-mappings/eng",
        "/attribute-mapping",
        "/resources",
        "/resources/r1",
        "/resources/r1/write-key",
        "/grants",
        "/grants/g1",
        "/authorize",
        "/access-review",
        "/ownership/transfer",
        "/audit",
        "/audit/export",
        "/setup-links",
        "/setup-links/l1",
        "/idp",
        "/tokens",
        "/tokens/t1",
    ]
    .map(|path| format!("/api/v1/workspaces/acme{path}?limit=none&since=yesterday&after=x"));
    let scim = [
        "/scim/v2/Users?count=many&filter=((".to_owned(),
        format!("/scim/v2/Users/{id}?attributes=%00"),
        "/scim/v2/Users/.search".to_owned(),
        "/scim/v2/Groups?startIndex=first".to_owned(),
        format!("/scim/v2/Groups/{id}"),
        "/scim/v2/.search".to_owned(),
        "/scim/v2/Bulk".to_owned(),
        "/scim/v2/Schemas".to_owned(),
        "/scim/v2/ResourceTypes".to_owned(),
    ];
    let unknown = format!("idg_{}_{}", "0".repeat(32), "x".repeat(43));
    let callers: [(&str, Option<&str>, u16); 4] = [
        ("no token", None, 401),
        ("a malformed token", Some("not-a-token"), 401),
        ("an unknown token", Some(&unknown), 401),
        ("another workspace's token", Some(&other.token), 404),
    ];
    let mut wrong = Vec::new();
    for path in admin.iter().chain(&scim) {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            for (who, token, expected) in &callers {
                // SCIM's paths name no workspace: any workspace's SCIM token is at home there.
                if path.starts_with("/scim") && *expected == 404 {
                    continue;
                }
                let mut request = app
                    .client
                    .request(method.parse().unwrap(), app.url(path))
                    .content_type("application/json");
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let response = request.send_body("{\"not\": json").await.unwrap();
                let status = response.status().as_u16();
                // A method a route does not have may be answered 405 instead: it says nothing
                // of the request's contents.
                if status != *expected && status != 405 {
                    wrong.push(format!("{method} {path} with {who}: {status}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
