//! SCIM through HTTP: the Okta and Entra lifecycles replayed from fixtures, then the checks a
//! security reviewer and an IdP admin would make.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::helpers::{self, TestApp, TestDatabase, read, seen_by_replica, transaction_counter};
use crate::on_both_databases;

on_both_databases!(
    okta_lifecycle,
    entra_lifecycle,
    tokens_without_scim_are_refused_with_scim_errors,
    workspaces_never_see_each_other,
    filters_sort_and_page_in_the_database,
    versions_guard_writes,
    concurrent_member_adds_are_all_kept,
    writes_through_two_replicas_at_once_lose_nothing,
    reads_see_changes_made_elsewhere_at_once,
    bad_requests_are_400_and_change_nothing,
    provisioning_is_audited,
    discovery_describes_the_service,
    entra_validator_shapes_are_understood,
);

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Replaces `{{name}}` with captured values, in strings anywhere in a value.
fn substitute(value: &Value, captured: &HashMap<String, String>) -> Value {
    match value {
        Value::String(text) => Value::String(substitute_text(text, captured)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| substitute(item, captured))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, captured)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn substitute_text(text: &str, captured: &HashMap<String, String>) -> String {
    captured
        .iter()
        .fold(text.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{{{name}}}}}"), value)
        })
}

/// Whether `actual` contains `expected`: objects by subset, arrays element by element in any
/// order and of the same length, anything else by equality.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|found| contains(found, value))),
        (Value::Array(actual), Value::Array(expected)) => {
            let mut unused: Vec<&Value> = actual.iter().collect();
            actual.len() == expected.len()
                && expected.iter().all(|wanted| {
                    match unused.iter().position(|found| contains(found, wanted)) {
                        Some(index) => {
                            unused.remove(index);
                            true
                        }
                        None => false,
                    }
                })
        }
        (actual, expected) => actual == expected,
    }
}

async fn send(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, awc::http::header::HeaderMap) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(token)
        .insert_header(("Content-Type", "application/scim+json"));
    let response = match body {
        Some(body) => request.send_body(body.to_string()).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    let headers = response.headers().clone();
    let (status, body) = read(response).await;
    (status, body, headers)
}

/// Replays an IdP's requests against a server with the default settings, rate limits included:
/// an IdP sends them back to back.
async fn replay(database: TestDatabase, fixture: &str) {
    let default_rate = idgate::config::Settings::default().rate_limit;
    let app = TestApp::spawn_with(database, |settings| settings.rate_limit = default_rate).await;
    let tenant = app.tenant("acme", "scim");
    let path = format!("{}/fixtures/scim/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let script: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut captured = HashMap::new();
    for step in script["steps"].as_array().unwrap() {
        let name = step["name"].as_str().unwrap();
        let path = substitute_text(step["path"].as_str().unwrap(), &captured);
        let body = step.get("body").map(|body| substitute(body, &captured));
        let (status, answer, headers) = send(
            &app,
            &tenant.token,
            step["method"].as_str().unwrap(),
            &path,
            body.as_ref(),
        )
        .await;
        assert_eq!(
            status,
            step["status"].as_u64().unwrap() as u16,
            "{fixture}: {name}: {answer}"
        );
        if status != 204 && status != 304 {
            assert_eq!(
                headers.get("content-type").unwrap(),
                "application/scim+json",
                "{fixture}: {name}"
            );
        }
        if let Some(expected) = step.get("expect") {
            let expected = substitute(expected, &captured);
            assert!(
                contains(&answer, &expected),
                "{fixture}: {name}:\nexpected {expected}\nwithin   {answer}"
            );
        }
        for key in step["absent"].as_array().into_iter().flatten() {
            assert!(
                answer.get(key.as_str().unwrap()).is_none(),
                "{fixture}: {name}: {key} in {answer}"
            );
        }
        for key in step["absent_in_resources"].as_array().into_iter().flatten() {
            for resource in answer["Resources"].as_array().unwrap() {
                assert!(
                    resource.get(key.as_str().unwrap()).is_none(),
                    "{fixture}: {name}: {key} in {resource}"
                );
            }
        }
        if status == 201 {
            let location = headers
                .get("location")
                .expect("a Location header")
                .to_str()
                .unwrap();
            assert_eq!(
                Some(location),
                answer["meta"]["location"].as_str(),
                "{fixture}: {name}"
            );
            assert_eq!(
                headers.get("etag").unwrap().to_str().unwrap(),
                answer["meta"]["version"].as_str().unwrap()
            );
        }
        for (capture, field) in step["capture"].as_object().into_iter().flatten() {
            let value = answer[field.as_str().unwrap()].as_str().unwrap().to_owned();
            captured.insert(capture.clone(), value);
        }
    }
}

async fn okta_lifecycle(database: TestDatabase) {
    replay(database, "okta-lifecycle.json").await;
}

async fn entra_lifecycle(database: TestDatabase) {
    replay(database, "entra-lifecycle.json").await;
}

async fn create_user(app: &TestApp, token: &str, user_name: &str) -> String {
    let body = json!({"schemas": [USER], "userName": user_name});
    let (status, answer, _) = send(app, token, "POST", "/scim/v2/Users", Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

async fn create_group(app: &TestApp, token: &str, name: &str) -> String {
    let body = json!({"schemas": [GROUP], "displayName": name});
    let (status, answer, _) = send(app, token, "POST", "/scim/v2/Groups", Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

async fn tokens_without_scim_are_refused_with_scim_errors(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let admin = app.tenant("acme", "workspace:read,tokens:write");
    for token in [
        "",
        "not-a-token",
        &format!("idg_{}_{}", "0".repeat(32), "A".repeat(43)),
    ] {
        let (status, body, headers) = send(&app, token, "GET", "/scim/v2/Users", None).await;
        assert_eq!(status, 401, "{token}");
        assert!(
            headers
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
        assert_eq!(body["status"], "401");
    }
    // Every endpoint checks the token, those that read nothing of the workspace too.
    let empty_bulk =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []});
    for (method, path) in [
        ("GET", "/scim/v2/Schemas"),
        ("GET", "/scim/v2/ResourceTypes/User"),
        ("POST", "/scim/v2/Bulk"),
    ] {
        let body = (method == "POST").then_some(&empty_bulk);
        let (status, _, _) = send(&app, "not-a-token", method, path, body).await;
        assert_eq!(status, 401, "{method} {path}");
        let (status, _, _) = send(&app, &admin.token, method, path, body).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    let (status, body, _) = send(&app, &admin.token, "GET", "/scim/v2/Users", None).await;
    assert_eq!((status, body["status"].as_str()), (403, Some("403")));
    assert_eq!(body["detail"], "this token lacks the scim scope");
}

async fn workspaces_never_see_each_other(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let acme = app.tenant("acme", "scim");
    let globex = app.tenant("globex", "scim");
    let ada = create_user(&app, &acme.token, "ada@example.com").await;
    let group = create_group(&app, &acme.token, "Admins").await;
    // The same userName is free in another workspace.
    let other_ada = create_user(&app, &globex.token, "ada@example.com").await;

    // Reads one workspace made, kept while nothing changes, are never another's answer.
    let ada_path = format!("/scim/v2/Users/{ada}");
    let lookup = "/scim/v2/Users?filter=userName%20eq%20%22ada%40example.com%22";
    for (tenant, user, lookup_finds) in [
        (&globex, 404, &other_ada),
        (&acme, 200, &ada),
        (&acme, 200, &ada),
        (&globex, 404, &other_ada),
    ] {
        assert_eq!(
            send(&app, &tenant.token, "GET", &ada_path, None).await.0,
            user
        );
        let (_, listed, _) = send(&app, &tenant.token, "GET", lookup, None).await;
        assert_eq!(listed["Resources"][0]["id"], lookup_finds.as_str());
    }

    for (method, path) in [
        ("GET", format!("/scim/v2/Users/{ada}")),
        ("DELETE", format!("/scim/v2/Users/{ada}")),
        ("GET", format!("/scim/v2/Groups/{group}")),
    ] {
        let (status, body, _) = send(&app, &globex.token, method, &path, None).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (404, Some("404")),
            "{method} {path}"
        );
    }
    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(
        send(
            &app,
            &globex.token,
            "PATCH",
            &format!("/scim/v2/Users/{ada}"),
            Some(&patch)
        )
        .await
        .0,
        404
    );
    let (_, listed, _) = send(
        &app,
        &globex.token,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22ada%40example.com%22",
        None,
    )
    .await;
    assert_eq!(listed["totalResults"], 1);
    assert_eq!(listed["Resources"][0]["id"], other_ada.as_str());

    // A member from another workspace is an unknown id.
    let globex_group = create_group(&app, &globex.token, "Ops").await;
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": ada}]}]});
    let (status, body, _) = send(
        &app,
        &globex.token,
        "PATCH",
        &format!("/scim/v2/Groups/{globex_group}"),
        Some(&add),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["detail"], format!("unknown member ids: {ada}"));
    // Nor is another workspace's group one to add members to.
    let globex_member = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": other_ada}]}]});
    let acme_group = format!("/scim/v2/Groups/{group}");
    let (status, body, _) = send(
        &app,
        &globex.token,
        "PATCH",
        &acme_group,
        Some(&globex_member),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (404, Some("404")));
    let (_, acme_admins, _) = send(&app, &acme.token, "GET", &acme_group, None).await;
    assert_eq!(acme_admins["members"], json!([]), "{acme_admins}");
    assert_eq!(acme_admins["meta"]["version"], "W/\"1\"");
    let (_, still, _) = send(
        &app,
        &acme.token,
        "GET",
        &format!("/scim/v2/Users/{ada}"),
        None,
    )
    .await;
    assert_eq!(
        still["meta"]["version"], "W/\"1\"",
        "nothing another workspace sent changed it"
    );
}

async fn filters_sort_and_page_in_the_database(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let people = [
        ("carol@example.com", "Carol", "Work"),
        ("alice@example.org", "Alice", "work"),
        ("bob@example.com", "Bob", "home"),
    ];
    for (user_name, given, email_type) in people {
        let body = json!({"schemas": [USER], "userName": user_name, "name": {"givenName": given},
                          "emails": [{"value": user_name, "type": email_type}], "title": if given == "Bob" { Value::Null } else { json!("Engineer") }});
        assert_eq!(
            send(&app, &tenant.token, "POST", "/scim/v2/Users", Some(&body))
                .await
                .0,
            201
        );
    }
    let names = |answer: &Value| -> Vec<String> {
        answer["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases: [(&str, &[&str]); 11] = [
        ("userName sw \"A\"", &["alice@example.org"]),
        (
            "userName gt \"B\"",
            &["carol@example.com", "bob@example.com"],
        ),
        ("userName eq \"Alice@EXAMPLE.org\"", &["alice@example.org"]),
        (
            "emails co \"example.com\"",
            &["carol@example.com", "bob@example.com"],
        ),
        (
            "emails[type eq \"work\" and value ew \".org\"]",
            &["alice@example.org"],
        ),
        ("title pr", &["carol@example.com", "alice@example.org"]),
        ("not (title pr)", &["bob@example.com"]),
        (
            "name.givenName eq \"bob\" or userName eq \"CAROL@example.com\"",
            &["carol@example.com", "bob@example.com"],
        ),
        ("userName co \"%\"", &[]),
        (
            "meta.created gt \"2000-01-01T00:00:00Z\" and meta.lastModified lt \"2999-01-01T00:00:00Z\"",
            &["carol@example.com", "alice@example.org", "bob@example.com"],
        ),
        ("id eq \"nope\"", &[]),
    ];
    for (filter, expected) in cases {
        let path = format!("/scim/v2/Users?filter={}", urlencode(filter));
        let (status, answer, _) = send(&app, &tenant.token, "GET", &path, None).await;
        assert_eq!(status, 200, "{filter}: {answer}");
        assert_eq!(names(&answer), expected, "{filter}");
        assert_eq!(answer["totalResults"], expected.len(), "{filter}");
    }
    let (_, sorted, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Users?sortBy=name.givenName&sortOrder=descending",
        None,
    )
    .await;
    assert_eq!(
        names(&sorted),
        ["carol@example.com", "bob@example.com", "alice@example.org"]
    );
    let (_, sorted, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Users?sortBy=userName&sortOrder=descending",
        None,
    )
    .await;
    assert_eq!(
        names(&sorted),
        ["carol@example.com", "bob@example.com", "alice@example.org"]
    );
    let (_, sorted, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Users?sortBy=title&startIndex=2&count=2",
        None,
    )
    .await;
    assert_eq!(
        names(&sorted),
        ["alice@example.org", "bob@example.com"],
        "ties by creation, missing titles last"
    );
    assert_eq!(
        (
            sorted["startIndex"].as_i64(),
            sorted["itemsPerPage"].as_i64(),
            sorted["totalResults"].as_i64()
        ),
        (Some(2), Some(2), Some(3))
    );

    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName ew \".com\"", "attributes": ["userName"], "count": 1});
    let (status, found, _) = send(
        &app,
        &tenant.token,
        "POST",
        "/scim/v2/Users/.search",
        Some(&search),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (
            found["totalResults"].as_i64(),
            found["itemsPerPage"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert!(
        found["Resources"][0].get("emails").is_none() && found["Resources"][0]["id"].is_string()
    );

    for (filter, position) in [
        ("userName eq", "position 11"),
        ("userName xx \"a\"", "position 9"),
        ("nope eq \"x\"", "unknown attribute"),
    ] {
        let (status, answer, _) = send(
            &app,
            &tenant.token,
            "GET",
            &format!("/scim/v2/Users?filter={}", urlencode(filter)),
            None,
        )
        .await;
        assert_eq!(
            (status, answer["scimType"].as_str()),
            (400, Some("invalidFilter")),
            "{filter}"
        );
        assert!(
            answer["detail"].as_str().unwrap().contains(position),
            "{filter}: {answer}"
        );
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn versions_guard_writes(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let id = create_user(&app, &tenant.token, "ada@example.com").await;
    let path = format!("/scim/v2/Users/{id}");
    let get = |tag: &'static str| {
        app.client
            .get(app.url(&path))
            .bearer_auth(&tenant.token)
            .insert_header(("If-None-Match", tag))
    };
    assert_eq!(get("W/\"1\"").send().await.unwrap().status(), 304);
    assert_eq!(get("W/\"2\"").send().await.unwrap().status(), 200);

    let patch = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Ada"}]});
    let stale = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&tenant.token)
        .insert_header(("If-Match", "W/\"7\""));
    let (status, body) = read(stale.send_body(patch.to_string()).await.unwrap()).await;
    assert_eq!(status, 412, "{body}");
    let current = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&tenant.token)
        .insert_header(("If-Match", "W/\"1\""));
    let response = current.send_body(patch.to_string()).await.unwrap();
    assert_eq!(response.headers().get("etag").unwrap(), "W/\"2\"");
    assert_eq!(read(response).await.1["displayName"], "Ada");

    // A group's members are looked up before its row is locked; a stale version, or no group,
    // is still the answer before an unknown member.
    let group = create_group(&app, &tenant.token, "Engineering").await;
    let add_unknown = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": "no-such-member"}]}]});
    let stale = app
        .client
        .patch(app.url(&format!("/scim/v2/Groups/{group}")))
        .bearer_auth(&tenant.token)
        .insert_header(("If-Match", "W/\"7\""));
    let (status, body) = read(stale.send_body(add_unknown.to_string()).await.unwrap()).await;
    assert_eq!(status, 412, "{body}");
    let path = "/scim/v2/Groups/no-such-group";
    let (status, body, _) = send(&app, &tenant.token, "PATCH", path, Some(&add_unknown)).await;
    assert_eq!(status, 404, "{body}");
    let path = format!("/scim/v2/Groups/{group}");
    let (status, body, _) = send(&app, &tenant.token, "PATCH", &path, Some(&add_unknown)).await;
    assert_eq!(status, 400, "{body}");
}

async fn concurrent_member_adds_are_all_kept(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let group = create_group(&app, &tenant.token, "Everyone").await;
    let mut users = Vec::new();
    for n in 0..12 {
        users.push(create_user(&app, &tenant.token, &format!("user{n}@example.com")).await);
    }
    let path = format!("/scim/v2/Groups/{group}");
    // On PostgreSQL, adds waiting for the group are made together: one naming an unknown member
    // among them is refused alone.
    let unknown = "no-such-user".to_owned();
    let adds = users.iter().chain([&unknown]).map(|user| {
        let body = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]});
        let request = app.client.patch(app.url(&path)).bearer_auth(&tenant.token);
        async move { request.send_body(body.to_string()).await.unwrap().status().as_u16() }
    });
    let mut statuses = futures_util::future::join_all(adds).await;
    assert_eq!(statuses.pop(), Some(400));
    assert!(statuses.iter().all(|status| *status == 204), "{statuses:?}");
    let (_, answer, _) = send(&app, &tenant.token, "GET", &path, None).await;
    assert_eq!(answer["members"].as_array().unwrap().len(), users.len());
    assert_eq!(
        answer["meta"]["version"],
        format!("W/\"{}\"", users.len() + 1)
    );
}

/// Member adds waiting for one group are made together on PostgreSQL, in one statement: each
/// request is refused, versioned and audited as if it had been made alone.
#[actix_web::test]
async fn member_adds_made_together_are_each_answered_as_if_alone() {
    use actix_web::ResponseError;
    use diesel::prelude::*;
    use idgate::api::scim::provisioning::{self, MemberAdd};
    use idgate::audit::{Actor, AuditContext};
    use idgate::db::schema::audit_events;
    use idgate::directory::{groups, users};
    use idgate::scim::{resource::normalize, schema::ResourceKind};

    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let mut conn = database.connect();
    let workspace = helpers::workspace(&mut conn, "acme");
    let cli = AuditContext::cli();
    let [ada, grace, alan] = ["ada", "grace", "alan"].map(|name| {
        let document = normalize(ResourceKind::User, &json!({"userName": name})).unwrap();
        users::create(&mut conn, &workspace.id, document, &cli)
            .unwrap()
            .id
    });
    let document = normalize(ResourceKind::Group, &json!({"displayName": "Everyone"})).unwrap();
    let group =
        groups::create(&mut conn, &workspace.id, document, vec![alan.clone()], &cli).unwrap();
    let add = |n: usize, ids: &[&str]| MemberAdd {
        ids: ids.iter().map(|id| id.to_string()).collect(),
        context: AuditContext {
            actor: Actor::Token(format!("token-{n}")),
            request_id: Some(format!("request-{n}")),
        },
    };
    let adds = [
        add(1, &[&ada]),
        // Ada is the first request's; Grace is this one's.
        add(2, &[&ada, &grace]),
        add(3, &[&grace, "no-such-user"]),
        add(4, &[&group.id]),
        add(5, &[&alan]),
        add(6, &[&ada]),
    ];
    let answers = provisioning::add_group_members(&mut conn, &workspace.id, &group.id, &adds)
        .expect("the adds are made together");
    let statuses: Vec<u16> = answers
        .iter()
        .map(|answer| match answer {
            Ok(_) => 200,
            Err(error) => error.status_code().as_u16(),
        })
        .collect();
    assert_eq!(statuses, [200, 200, 400, 400, 200, 200]);

    let members =
        groups::members_of(&mut conn, std::slice::from_ref(&group.id), None, None).unwrap();
    let mut members: Vec<String> = members.into_iter().map(|m| m.member_id).collect();
    members.sort();
    let mut expected = vec![ada.clone(), grace.clone(), alan];
    expected.sort();
    assert_eq!(members, expected);
    // Raised by each request that added someone.
    let stored = groups::load(&mut conn, &workspace.id, &group.id).unwrap();
    assert_eq!(stored.version, group.version + 2);
    // Every accepted add answers with the group as the statement left it.
    assert_eq!(answers[0].as_ref().unwrap().version, stored.version);

    let events: Vec<(Option<String>, Option<String>, String)> = audit_events::table
        .filter(audit_events::action.eq("scim.group.updated"))
        .filter(audit_events::target_id.eq(&group.id))
        .order(audit_events::request_id)
        .select((
            audit_events::actor_id,
            audit_events::request_id,
            audit_events::details,
        ))
        .load(&mut *conn)
        .unwrap();
    let events: Vec<(String, String, Value)> = events
        .into_iter()
        .map(|(actor, request, details)| {
            let details: Value = serde_json::from_str(&details).unwrap();
            (
                actor.unwrap(),
                request.unwrap(),
                details["members_added"].clone(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("token-1".to_owned(), "request-1".to_owned(), json!([ada])),
            ("token-2".to_owned(), "request-2".to_owned(), json!([grace])),
        ]
    );

    let answers =
        provisioning::add_group_members(&mut conn, &workspace.id, "no-such-group", &adds[..1])
            .unwrap();
    assert_eq!(answers[0].as_ref().unwrap_err().status_code(), 404);
}

async fn writes_through_two_replicas_at_once_lose_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let replica = app.spawn_replica().await;
    let tenant = app.tenant("acme", "scim");
    let group = create_group(&app, &tenant.token, "Everyone").await;
    let servers = [app.url(""), replica];
    let post = |n: usize| {
        let body = json!({"schemas": [USER], "userName": format!("user{n}@example.com")});
        let request = app
            .client
            .post(format!("{}/scim/v2/Users", servers[n % 2]))
            .bearer_auth(&tenant.token)
            .insert_header(("Content-Type", "application/scim+json"));
        async move {
            let mut response = request.send_body(body.to_string()).await.unwrap();
            assert_eq!(response.status(), 201);
            let created: Value = response.json().await.unwrap();
            created["id"].as_str().unwrap().to_owned()
        }
    };
    let users = futures_util::future::join_all((0..16).map(post)).await;
    let adds = users.iter().enumerate().map(|(n, user)| {
        let body = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]});
        let request = app
            .client
            .patch(format!("{}/scim/v2/Groups/{group}", servers[n % 2]))
            .bearer_auth(&tenant.token);
        async move { request.send_body(body.to_string()).await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(adds).await;
    assert!(statuses.iter().all(|status| *status == 204), "{statuses:?}");
    let (_, listed, _) = send(&app, &tenant.token, "GET", "/scim/v2/Users?count=100", None).await;
    assert_eq!(listed["totalResults"], 16);
    let path = format!("/scim/v2/Groups/{group}");
    let (_, answer, _) = send(&app, &tenant.token, "GET", &path, None).await;
    assert_eq!(answer["members"].as_array().unwrap().len(), users.len());
}

/// A server keeps what it read while the database is unchanged: a change another server or the
/// CLI commits must still be seen within a second.
async fn reads_see_changes_made_elsewhere_at_once(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let replica = app.spawn_replica().await;
    let tenant = app.tenant("acme", "scim");
    let id = create_user(&app, &tenant.token, "ada@example.com").await;
    let path = format!("/scim/v2/Users/{id}");
    let display_name = || async {
        let (status, user, _) = send(&app, &tenant.token, "GET", &path, None).await;
        assert_eq!(status, 200, "{user}");
        user["displayName"].clone()
    };
    assert_eq!(display_name().await, Value::Null);
    assert_eq!(display_name().await, Value::Null, "read twice: now kept");

    let rename = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Ada L."}]});
    let renamed = app
        .client
        .patch(format!("{replica}{path}"))
        .bearer_auth(&tenant.token)
        .send_body(rename.to_string())
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    seen_by_replica("a rename", || async { display_name().await == "Ada L." }).await;

    let lookup = format!(
        "/scim/v2/Users?filter={}",
        urlencode("userName eq \"grace@example.com\"")
    );
    let found = || async {
        let (status, list, _) = send(&app, &tenant.token, "GET", &lookup, None).await;
        assert_eq!(status, 200, "{list}");
        list["totalResults"].clone()
    };
    assert_eq!(found().await, 0);
    assert_eq!(found().await, 0, "looked up twice: now kept");
    let grace = json!({"schemas": [USER], "userName": "grace@example.com"});
    let created = app
        .client
        .post(format!("{replica}/scim/v2/Users"))
        .bearer_auth(&tenant.token)
        .send_body(grace.to_string())
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    seen_by_replica("a new user", || async { found().await == 1 }).await;

    let revoked = app.cli(&["token", "revoke", &tenant.token_id]).await;
    assert!(revoked.status.success());
    seen_by_replica("the CLI's revocation", || async {
        let (status, answer, _) = send(&app, &tenant.token, "GET", &path, None).await;
        if status == 200 {
            return false;
        }
        assert_eq!(
            (status, answer["detail"].as_str()),
            (401, Some("the token has been revoked"))
        );
        true
    })
    .await;
}

async fn bad_requests_are_400_and_change_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let id = create_user(&app, &tenant.token, "ada@example.com").await;
    let group = create_group(&app, &tenant.token, "Admins").await;
    let user_path = format!("/scim/v2/Users/{id}");
    let cases = [
        (
            "POST",
            "/scim/v2/Users".to_owned(),
            json!({"schemas": [USER]}),
            "invalidValue",
        ),
        (
            "POST",
            "/scim/v2/Users".to_owned(),
            json!({"schemas": [USER], "userName": "x", "shoeSize": 9, "active": "maybe"}),
            "invalidValue",
        ),
        (
            "POST",
            "/scim/v2/Users".to_owned(),
            json!({"schemas": [USER], "userName": "x", "active": "perhaps"}),
            "invalidValue",
        ),
        (
            "POST",
            "/scim/v2/Groups".to_owned(),
            json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": "no-such-id"}]}),
            "invalidValue",
        ),
        (
            "PATCH",
            user_path.clone(),
            json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
            "invalidValue",
        ),
        (
            "PATCH",
            user_path.clone(),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "new"}, {"op": "replace", "path": "meta.created", "value": "x"}]}),
            "mutability",
        ),
        (
            "PATCH",
            user_path.clone(),
            json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[", "value": "x"}]}),
            "invalidPath",
        ),
        (
            "PATCH",
            user_path.clone(),
            json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": "emails[value co \"zz\"].display"}, {"op": "remove"}]}),
            "noTarget",
        ),
        (
            "PATCH",
            format!("/scim/v2/Groups/{group}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": "ghost"}]}]}),
            "invalidValue",
        ),
        (
            "PATCH",
            format!("/scim/v2/Groups/{group}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}, {"value": "ghost"}]}]}),
            "invalidValue",
        ),
        (
            "PATCH",
            format!("/scim/v2/Groups/{group}"),
            json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": group}]}]}),
            "invalidValue",
        ),
    ];
    for (method, path, body, scim_type) in cases {
        let (status, answer, _) = send(&app, &tenant.token, method, &path, Some(&body)).await;
        assert_eq!(
            (status, answer["scimType"].as_str()),
            (400, Some(scim_type)),
            "{method} {path} {body}: {answer}"
        );
    }
    let raw = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&tenant.token)
        .insert_header(("Content-Type", "application/scim+json"));
    let (status, answer) = read(raw.send_body("{\"userName\": ").await.unwrap()).await;
    assert_eq!(
        (status, answer["scimType"].as_str()),
        (400, Some("invalidSyntax"))
    );
    let huge = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&tenant.token)
        .insert_header(("Content-Type", "application/scim+json"));
    let (status, answer) = read(
        huge.send_body(format!("{{\"userName\": \"{}\"}}", "x".repeat(2 << 20)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (413, Some("413")),
        "{answer}"
    );

    let (_, user, _) = send(&app, &tenant.token, "GET", &user_path, None).await;
    assert_eq!(
        (user["userName"].as_str(), user["meta"]["version"].as_str()),
        (Some("ada@example.com"), Some("W/\"1\""))
    );
    let (_, list, _) = send(&app, &tenant.token, "GET", "/scim/v2/Groups", None).await;
    assert_eq!(list["totalResults"], 1);
    assert_eq!(list["Resources"][0]["members"], json!([]), "{list}");
    assert_eq!(list["Resources"][0]["meta"]["version"], "W/\"1\"");
}

async fn provisioning_is_audited(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim,audit:read");
    let id = create_user(&app, &tenant.token, "ada@example.com").await;
    let deactivate =
        json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]});
    send(
        &app,
        &tenant.token,
        "PATCH",
        &format!("/scim/v2/Users/{id}"),
        Some(&deactivate),
    )
    .await;
    let group = create_group(&app, &tenant.token, "Admins").await;
    let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
    // Adding a member again changes nothing: no new version, no second event.
    for _ in 0..2 {
        let (status, _, headers) = send(
            &app,
            &tenant.token,
            "PATCH",
            &format!("/scim/v2/Groups/{group}"),
            Some(&add),
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(headers.get("etag").unwrap(), "W/\"2\"");
    }
    send(
        &app,
        &tenant.token,
        "DELETE",
        &format!("/scim/v2/Users/{id}"),
        None,
    )
    .await;

    let (_, audit) = app
        .get(
            &format!(
                "/api/v1/workspaces/acme/audit?actor=token:{}",
                tenant.token_id
            ),
            &tenant.token,
        )
        .await;
    let events: Vec<(String, Value)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["details"].clone(),
            )
        })
        .collect();
    let actions: Vec<&str> = events.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "scim.user.created",
            "scim.user.deactivated",
            "scim.group.created",
            "scim.group.updated",
            "scim.user.deleted"
        ]
    );
    assert_eq!(events[1].1["changed"], json!(["active"]));
    assert_eq!(events[3].1["members_added"], json!([id]));
}

async fn discovery_describes_the_service(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let (status, config, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/ServiceProviderConfig",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            config["patch"]["supported"].as_bool(),
            config["filter"]["maxResults"].as_i64()
        ),
        (Some(true), Some(1000))
    );
    assert_eq!(config["changePassword"]["supported"], false);
    let (_, types, _) = send(&app, &tenant.token, "GET", "/scim/v2/ResourceTypes", None).await;
    assert_eq!(types["totalResults"], 2);
    let (_, user_type, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/ResourceTypes/User",
        None,
    )
    .await;
    assert_eq!(user_type["endpoint"], "/Users");
    let (_, schemas, _) = send(&app, &tenant.token, "GET", "/scim/v2/Schemas", None).await;
    assert_eq!(schemas["totalResults"], 3);
    let (status, enterprise, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        None,
    )
    .await;
    assert_eq!(
        (status, enterprise["name"].as_str()),
        (200, Some("EnterpriseUser"))
    );
    let (status, missing, _) = send(&app, &tenant.token, "GET", "/scim/v2/Nowhere", None).await;
    assert_eq!((status, missing["status"].as_str()), (404, Some("404")));
}

on_both_databases!(
    bulk_operations_reference_each_other,
    cursor_pages_walk_everything_once,
    index_pages_walk_everything_once_while_the_list_changes,
    users_a_page_keeps_are_whole_and_current,
    a_page_decodes_only_the_users_the_caller_lacks
);

/// A page keeps the users it read, with their groups, for the next page or GET that shows them:
/// a page that left `groups` out keeps nothing, and a change is seen by both at once.
async fn users_a_page_keeps_are_whole_and_current(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let id = create_user(&app, &tenant.token, "ada@example.com").await;
    let add_to = |group: String| {
        let (app, token, id) = (&app, tenant.token.clone(), id.clone());
        async move {
            let add = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
            let path = format!("/scim/v2/Groups/{group}");
            let (status, answer, _) = send(app, &token, "PATCH", &path, Some(&add)).await;
            assert!(status == 200 || status == 204, "{answer}");
        }
    };
    add_to(create_group(&app, &tenant.token, "Engineering").await).await;
    let get = || async {
        let path = format!("/scim/v2/Users/{id}");
        let (status, user, _) = send(&app, &tenant.token, "GET", &path, None).await;
        assert_eq!(status, 200, "{user}");
        user
    };
    let first_of = |query: &'static str| {
        let (app, token) = (&app, tenant.token.clone());
        async move {
            let path = format!("/scim/v2/Users?{query}");
            let (status, list, _) = send(app, &token, "GET", &path, None).await;
            assert_eq!(status, 200, "{list}");
            list["Resources"][0].clone()
        }
    };
    let group_names = |user: &Value| -> Vec<String> {
        let groups = user["groups"].as_array().cloned().unwrap_or_default();
        groups
            .iter()
            .map(|group| group["display"].as_str().unwrap().to_owned())
            .collect()
    };

    let without_groups = first_of("excludedAttributes=groups").await;
    assert_eq!(without_groups["groups"], Value::Null);
    assert_eq!(group_names(&get().await), ["Engineering"]);
    for _ in 0..2 {
        let shown = first_of("startIndex=1&count=10").await;
        assert_eq!(shown, get().await, "a page shows a user as GET does");
        assert_eq!(group_names(&shown), ["Engineering"]);
    }

    add_to(create_group(&app, &tenant.token, "Operations").await).await;
    assert_eq!(
        group_names(&first_of("startIndex=1&count=10").await),
        ["Engineering", "Operations"]
    );
    assert_eq!(group_names(&get().await), ["Engineering", "Operations"]);
}

/// A page decodes only the users the caller has no copy of: read whole, it decodes each row's id
/// first; read again (its total known), it reads the ids and then the rows of the others alone.
/// Either way the caller is asked about every user of the page, in order, and its copy is used.
async fn a_page_decodes_only_the_users_the_caller_lacks(database: TestDatabase) {
    use idgate::directory::store::Page;
    use idgate::directory::users::{self, Listed};
    use idgate::scim::{resource::normalize, schema::ResourceKind};

    let mut conn = database.connect();
    let workspace = helpers::workspace(&mut conn, "acme");
    let context = idgate::audit::AuditContext::cli();
    let mut ids = Vec::new();
    for name in ["ada@example.com", "bob@example.com", "cy@example.com"] {
        let document = normalize(ResourceKind::User, &json!({"userName": name})).unwrap();
        let user = users::create(&mut conn, &workspace.id, document, &context).unwrap();
        ids.push(user.id);
    }
    let first_read = Page {
        condition: None,
        sort: None,
        offset: 0,
        limit: 10,
        after: None,
        known_total: None,
        read_before: false,
    };
    let read_again = Page {
        known_total: Some(3),
        read_before: true,
        ..first_read.clone()
    };
    for page in [first_read, read_again] {
        let mut asked = Vec::new();
        let (total, listed) = users::list(&mut conn, &workspace.id, &page, |id| {
            asked.push(id.to_owned());
            (id == ids[1]).then_some("bob, as kept")
        })
        .unwrap();
        assert_eq!((total, &asked), (3, &ids), "{page:?}");
        let shown: Vec<String> = listed
            .iter()
            .map(|listed| match listed {
                Listed::Kept(copy) => copy.to_string(),
                Listed::Read(user) => user.user_name.clone(),
            })
            .collect();
        assert_eq!(shown, ["ada@example.com", "bob, as kept", "cy@example.com"]);
    }
}

/// An import walks `startIndex` pages; the server keeps the count and where each page ended while
/// nothing changes, and a change between two walks (or in the middle of one) is seen.
async fn index_pages_walk_everything_once_while_the_list_changes(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(create_user(&app, &tenant.token, &format!("user{n}@example.com")).await);
    }
    let page = |start: usize| {
        let path = format!("/scim/v2/Users?startIndex={start}&count=2&attributes=userName");
        let (app, token) = (&app, tenant.token.clone());
        async move {
            let (status, list, _) = send(app, &token, "GET", &path, None).await;
            assert_eq!(status, 200, "{list}");
            let found: Vec<String> = list["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|user| user["id"].as_str().unwrap().to_owned())
                .collect();
            (list["totalResults"].as_i64().unwrap(), found)
        }
    };
    let walk = || async {
        let mut seen = Vec::new();
        let mut totals = Vec::new();
        for start in (1..=9).step_by(2) {
            let (total, found) = page(start).await;
            totals.push(total);
            seen.extend(found);
        }
        (totals, seen)
    };
    for _ in 0..2 {
        assert_eq!(walk().await, (vec![7; 5], ids.clone()));
    }

    let (status, _, _) = send(
        &app,
        &tenant.token,
        "DELETE",
        &format!("/scim/v2/Users/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!(status, 204);
    ids.remove(1);
    assert_eq!(walk().await, (vec![6; 5], ids.clone()));

    // A user made in the middle of a walk is counted by the pages after it, and found last.
    assert_eq!(page(1).await, (6, ids[0..2].to_vec()));
    assert_eq!(page(3).await, (6, ids[2..4].to_vec()));
    ids.push(create_user(&app, &tenant.token, "late@example.com").await);
    assert_eq!(page(5).await, (7, ids[4..6].to_vec()));
    assert_eq!(page(7).await, (7, ids[6..7].to_vec()));
    assert_eq!(walk().await, (vec![7; 5], ids.clone()));
}

async fn bulk_operations_reference_each_other(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let request = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 2,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "ada", "data": {"schemas": [USER], "userName": "ada@example.com"}},
            {"method": "POST", "path": "/Groups", "bulkId": "eng", "data": {"schemas": [GROUP], "displayName": "Eng", "members": [{"value": "bulkId:ada"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:ada", "data": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Countess"}]}},
            {"method": "POST", "path": "/Users", "data": {"schemas": [USER], "userName": "ADA@example.com"}},
            {"method": "DELETE", "path": "/Groups/bulkId:nobody"},
            {"method": "POST", "path": "/Users", "data": {"schemas": [USER], "userName": "never@example.com"}},
        ],
    });
    let (status, answer, _) =
        send(&app, &tenant.token, "POST", "/scim/v2/Bulk", Some(&request)).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["201", "201", "200", "409", "400"],
        "failOnErrors stops after two errors: {answer}"
    );
    assert_eq!(results[3]["response"]["scimType"], "uniqueness");
    assert_eq!(results[0]["bulkId"], "ada");
    let ada = results[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, user, _) = send(
        &app,
        &tenant.token,
        "GET",
        &format!("/scim/v2/Users/{ada}"),
        None,
    )
    .await;
    assert_eq!(user["title"], "Countess");
    assert_eq!(user["groups"][0]["display"], "Eng");
    let (_, never, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22never%40example.com%22",
        None,
    )
    .await;
    assert_eq!(never["totalResults"], 0);

    let too_many = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": (0..1001).map(|_| json!({"method": "DELETE", "path": "/Users/x"})).collect::<Vec<_>>(),
    });
    let (status, answer, _) = send(
        &app,
        &tenant.token,
        "POST",
        "/scim/v2/Bulk",
        Some(&too_many),
    )
    .await;
    assert_eq!(
        (status, answer["scimType"].as_str()),
        (413, Some("tooMany"))
    );
}

async fn cursor_pages_walk_everything_once(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(create_user(&app, &tenant.token, &format!("user{n}@example.com")).await);
    }
    let mut seen = Vec::new();
    let mut path = "/scim/v2/Users?cursor=&count=3".to_owned();
    loop {
        let (status, page, _) = send(&app, &tenant.token, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["totalResults"], 7);
        assert!(page.get("startIndex").is_none());
        seen.extend(
            page["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => path = format!("/scim/v2/Users?cursor={next}&count=3"),
            None => break,
        }
    }
    assert_eq!(seen, created);
    for bad in [
        "/scim/v2/Users?cursor=bm9wZQ",
        "/scim/v2/Users?cursor=%25%25",
    ] {
        let (status, answer, _) = send(&app, &tenant.token, "GET", bad, None).await;
        assert_eq!(
            (status, answer["scimType"].as_str()),
            (400, Some("invalidCursor")),
            "{bad}"
        );
    }
    let (status, _, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Users?cursor=&sortBy=userName",
        None,
    )
    .await;
    assert_eq!(status, 400);
}

on_both_databases!(large_groups_stream_and_stay_cheap_to_change);

/// More members than one streamed batch holds, added through the library as an IdP would have
/// over many requests.
async fn large_groups_stream_and_stay_cheap_to_change(database: TestDatabase) {
    use idgate::directory::{groups, users};
    use idgate::scim::{resource::normalize, schema::ResourceKind};
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let context = idgate::audit::AuditContext::cli();
    let mut conn = app.database.connect();
    let workspace_id = tenant.workspace.id.clone();
    let mut ids = Vec::new();
    for n in 0..1500 {
        let document = normalize(
            ResourceKind::User,
            &json!({"userName": format!("u{n:04}@example.com")}),
        )
        .unwrap();
        ids.push(
            users::create(&mut conn, &workspace_id, document, &context)
                .unwrap()
                .id,
        );
    }
    let document = normalize(ResourceKind::Group, &json!({"displayName": "Everyone"})).unwrap();
    let group = groups::create(&mut conn, &workspace_id, document, ids.clone(), &context).unwrap();
    drop(conn);

    let path = format!("/scim/v2/Groups/{}", group.id);
    let (status, answer, headers) = send(&app, &tenant.token, "GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("etag").unwrap(), "W/\"1\"");
    let mut streamed: Vec<String> = answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    streamed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(streamed, expected, "every member once, across batches");
    assert_eq!(answer["displayName"], "Everyone");
    assert_eq!(answer["meta"]["version"], "W/\"1\"");

    let (_, projected, _) = send(
        &app,
        &tenant.token,
        "GET",
        &format!("{path}?attributes=members.value"),
        None,
    )
    .await;
    assert_eq!(
        projected["members"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["value"]
    );
    let (_, without, _) = send(
        &app,
        &tenant.token,
        "GET",
        &format!("{path}?excludedAttributes=members"),
        None,
    )
    .await;
    assert!(without.get("members").is_none() && without["displayName"] == "Everyone");

    let remove = json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[700])}]});
    assert_eq!(
        send(&app, &tenant.token, "PATCH", &path, Some(&remove))
            .await
            .0,
        204
    );
    let (_, after, _) = send(&app, &tenant.token, "GET", &path, None).await;
    assert_eq!(after["members"].as_array().unwrap().len(), 1499);
}

on_both_databases!(root_search_spans_users_and_groups);

async fn root_search_spans_users_and_groups(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let body = json!({"schemas": [USER], "userName": "ada@example.com", "displayName": "Ada"});
    assert_eq!(
        send(&app, &tenant.token, "POST", "/scim/v2/Users", Some(&body))
            .await
            .0,
        201
    );
    create_group(&app, &tenant.token, "Admins").await;
    create_group(&app, &tenant.token, "Support").await;
    let search = |filter: &str, start: i64, count: i64| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter, "startIndex": start, "count": count});
    let names = |answer: &Value| -> Vec<String> {
        answer["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["displayName"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let (status, both, _) = send(
        &app,
        &tenant.token,
        "POST",
        "/scim/v2/.search",
        Some(&search("displayName sw \"A\"", 1, 10)),
    )
    .await;
    assert_eq!(status, 200, "{both}");
    assert_eq!(
        (both["totalResults"].as_i64(), names(&both)),
        (Some(2), vec!["Ada".to_owned(), "Admins".to_owned()])
    );
    let (_, second, _) = send(
        &app,
        &tenant.token,
        "POST",
        "/scim/v2/.search",
        Some(&search("displayName sw \"A\"", 2, 1)),
    )
    .await;
    assert_eq!(
        (second["startIndex"].as_i64(), names(&second)),
        (Some(2), vec!["Admins".to_owned()])
    );
    let (_, users_only, _) = send(
        &app,
        &tenant.token,
        "POST",
        "/scim/v2/.search",
        Some(&search("userName pr", 1, 10)),
    )
    .await;
    assert_eq!(users_only["totalResults"], 1);
}

on_both_databases!(group_lists_stream_every_group_with_its_members);

/// A page of groups carries each group's members, read as they are sent.
async fn group_lists_stream_every_group_with_its_members(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let ada = create_user(&app, &tenant.token, "ada@example.com").await;
    let bob = create_user(&app, &tenant.token, "bob@example.com").await;
    let body = json!({"schemas": [GROUP], "displayName": "Both", "members": [{"value": ada}, {"value": bob}]});
    assert_eq!(
        send(&app, &tenant.token, "POST", "/scim/v2/Groups", Some(&body))
            .await
            .0,
        201
    );
    create_group(&app, &tenant.token, "Empty").await;
    let (status, list, headers) = send(&app, &tenant.token, "GET", "/scim/v2/Groups", None).await;
    assert_eq!(
        (
            status,
            headers.get("content-type").unwrap().to_str().unwrap()
        ),
        (200, "application/scim+json")
    );
    assert_eq!(
        (
            list["totalResults"].as_i64(),
            list["itemsPerPage"].as_i64(),
            list["startIndex"].as_i64()
        ),
        (Some(2), Some(2), Some(1))
    );
    let mut members: Vec<&str> = list["Resources"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut expected = vec![ada.as_str(), bob.as_str()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(list["Resources"][1]["members"], json!([]));
    assert_eq!(list["Resources"][1]["displayName"], "Empty");
    let (_, slim, _) = send(
        &app,
        &tenant.token,
        "GET",
        "/scim/v2/Groups?excludedAttributes=members",
        None,
    )
    .await;
    assert!(
        slim["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|group| group.get("members").is_none())
    );
}

/// What Microsoft's SCIM validator sends that the RFC allows: endpoint names in another case and
/// with a trailing slash, attribute names in another case, a value filter in `attributes`, an
/// attribute the schema does not define in a PUT; and a group read names each member.
async fn entra_validator_shapes_are_understood(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "scim");
    let token = &tenant.token;
    let user = json!({
        "schemas": [USER],
        "userName": "ada@example.com",
        "displayName": "Ada Lovelace",
        "emails": [
            {"value": "ada@example.com", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"},
        ],
    });
    let (status, created) = app.send_json("POST", "/scim/v2/users", token, &user).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, group) = app
        .send_json(
            "POST",
            "/scim/v2/groups/",
            token,
            &json!({"schemas": [GROUP], "displayName": "Engineering", "members": [{"value": id}]}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap();

    let filter = urlencode("DisplayName eq \"Engineering\"");
    let (status, found) = app
        .get(
            &format!("/scim/v2/Groups/?filter={filter}&attributes=DisplayName"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["displayName"], "Engineering");
    assert!(found["Resources"][0].get("members").is_none(), "{found}");
    let filter = urlencode("USERNAME eq \"ADA@example.com\"");
    let (status, found) = app
        .get(&format!("/SCIM/V2/USERS?filter={filter}"), token)
        .await;
    assert_eq!(
        (status, found["totalResults"].clone()),
        (200, json!(1)),
        "{found}"
    );

    // Only the work email, as the projection's value filter asks.
    let attributes = urlencode("emails[type eq \"work\"]");
    let (status, projected) = app
        .get(
            &format!("/scim/v2/Users/{id}?attributes={attributes}"),
            token,
        )
        .await;
    assert_eq!(status, 200, "{projected}");
    assert_eq!(
        projected["emails"],
        json!([{"value": "ada@example.com", "type": "work", "primary": true}]),
        "{projected}"
    );
    assert!(projected.get("displayName").is_none(), "{projected}");

    // A group read names each member by the user's displayName.
    let (status, read_group) = app
        .get(&format!("/scim/v2/groups/{group_id}/"), token)
        .await;
    assert_eq!(status, 200, "{read_group}");
    assert_eq!(read_group["members"][0]["value"], id.as_str());
    assert_eq!(
        read_group["members"][0]["display"], "Ada Lovelace",
        "{read_group}"
    );

    // An attribute the schema does not define is ignored; a malformed one is still refused.
    let mut replaced = user.clone();
    replaced["displayName"] = json!("Ada King");
    replaced["costCenter"] = json!("R&D");
    let (status, body) = app
        .send_json("PUT", &format!("/scim/v2/Users/{id}"), token, &replaced)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayName"], "Ada King");
    assert!(body.get("costCenter").is_none(), "{body}");
    replaced["displayName"] = json!(["not", "one", "string"]);
    let (status, body) = app
        .send_json("PUT", &format!("/scim/v2/Users/{id}"), token, &replaced)
        .await;
    assert_eq!(status, 400, "{body}");

    // The SCIM 1.1 name of the service's configuration.
    let (status, config) = app.get("/scim/v2/serviceConfiguration", token).await;
    assert_eq!(status, 200, "{config}");
    assert!(config["patch"]["supported"].as_bool().unwrap());
}

/// Which of the named ids are already members, and removing some, must go by the ids on PostgreSQL
/// before its first ANALYZE, and after the group grew: planned on default statistics, `group_id =
/// $1 AND member_id = ANY($2)` read every member of the group and filtered them, about 0.2 s per
/// chunk of 500 in a group of 1,000,000, and a plan kept from while the group was small did the
/// same (this machine's PostgreSQL runs without autovacuum).
#[actix_web::test]
async fn member_changes_read_the_members_named_not_the_whole_group() {
    use diesel::connection::SimpleConnection;
    use idgate::directory::groups::{self, MemberChange};
    use idgate::scim::{resource::normalize, schema::ResourceKind};

    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let mut conn = database.connect();
    let context = idgate::audit::AuditContext::cli();
    let workspace = helpers::workspace(&mut conn, "acme");
    let document = normalize(ResourceKind::Group, &json!({"displayName": "Everyone"})).unwrap();
    let group =
        groups::create(&mut conn, &workspace.id, document.clone(), vec![], &context).unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO scim_users (id, workspace_id, user_name, user_name_ci, active, document, \
                                 version, created_at, updated_at) \
           SELECT 'u' || n, '{ws}', 'user' || n || '@example.com', 'user' || n || '@example.com', \
                  true, '{{}}', 1, now(), now() \
           FROM generate_series(1, 50000) AS n;",
        ws = workspace.id,
    ))
    .unwrap();
    // Changes while the group is small: a statement kept prepared would have its plan made now.
    let pair = || vec!["u1".to_owned(), "u2".to_owned()];
    for change in 0..12 {
        let members = match change % 2 {
            0 => MemberChange {
                add: pair(),
                ..MemberChange::default()
            },
            _ => MemberChange {
                remove: pair(),
                ..MemberChange::default()
            },
        };
        conn.write(|tx| {
            let kinds = groups::member_kinds(tx, &workspace.id, members.added())?;
            let current = groups::locked(tx, &workspace.id, &group.id, None)?;
            groups::apply(
                tx,
                &workspace.id,
                &current,
                document.clone(),
                members,
                &kinds,
            )
        })
        .unwrap()
        .expect("a change");
    }
    conn.batch_execute(&format!(
        "INSERT INTO scim_group_members (group_id, member_id, member_type) \
           SELECT '{group}', 'u' || n, 'User' FROM generate_series(1, 49500) AS n;",
        group = group.id,
    ))
    .unwrap();

    // Inside the write's transaction, which is what PostgreSQL's per-transaction view counts.
    let member_rows_read = |conn: &mut idgate::db::DbConnection| {
        transaction_counter(
            conn,
            "seq_tup_read + idx_tup_fetch",
            &["scim_group_members"],
        )
    };
    let (added, removed, rows_read) = conn
        .write(|tx| {
            let before = member_rows_read(tx.conn());
            let current = groups::locked(tx, &workspace.id, &group.id, None)?;
            let change = MemberChange {
                add: (49491..=50000).map(|n| format!("u{n}")).collect(),
                remove: (1..=3).map(|n| format!("u{n}")).collect(),
                ..MemberChange::default()
            };
            let kinds = groups::member_kinds(tx, &workspace.id, change.added())?;
            let applied =
                groups::apply(tx, &workspace.id, &current, document, change, &kinds)?.unwrap();
            let rows_read = member_rows_read(tx.conn()) - before;
            Ok::<_, idgate::scim::error::ScimError>((
                applied.added.len(),
                applied.removed.len(),
                rows_read,
            ))
        })
        .unwrap();
    assert_eq!(
        (added, removed),
        (500, 3),
        "u49501..u50000 added, u1..u3 removed"
    );
    assert!(
        rows_read < 2_000,
        "adding 510 members and removing 3 read {rows_read} membership rows of a group of 49,500"
    );
}
