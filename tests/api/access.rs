//! The access model through the admin API and the CLI: roles from direct assignment and mapped
//! IdP groups, resources, labels and grants, effective permissions, decisions, and the rules that
//! protect the last Owner and keep workspaces apart.

use idgate::permissions::{Action, Role};
use serde_json::{Value, json};

use crate::helpers::{Tenant, TestApp, TestDatabase, failure_line, stdout};
use crate::on_both_databases;

on_both_databases!(
    the_role_matrix_decides_through_the_api,
    roles_add_up_from_groups_and_direct_assignment,
    label_grants_reach_resources_labelled_later,
    temporary_grants_expire,
    no_access_hides_resources_from_lists,
    the_last_owner_cannot_be_taken_away,
    workspaces_never_see_each_other,
    the_seeds_example_end_to_end,
    write_keys_send_only_to_their_own_source,
    every_access_change_is_audited,
    bad_requests_are_400_and_change_nothing,
    deprovisioning_removes_access_and_reactivation_restores_the_least,
    a_change_through_one_replica_is_decided_at_once_by_another,
    a_name_is_resolved_afresh_for_every_decision,
);

const ALL: &str = "scim,workspace:read,workspace:write,sources:read,sources:write,tracking_plan:read,tracking_plan:write,audit:read,tokens:write";

fn api(path: &str) -> String {
    format!("/api/v1/workspaces/acme{path}")
}

async fn cli_succeeds(app: &TestApp, args: &[&str]) {
    let output = app.cli(args).await;
    assert!(output.status.success(), "{args:?}: {output:?}");
}

async fn user(app: &TestApp, tenant: &Tenant, user_name: &str) -> String {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "emails": [{"value": user_name, "primary": true}],
        "active": true,
    });
    let (status, user) = app
        .send_json("POST", "/scim/v2/Users", &tenant.token, &body)
        .await;
    assert_eq!(status, 201, "{user}");
    user["id"].as_str().unwrap().to_owned()
}

async fn group(app: &TestApp, tenant: &Tenant, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|id| json!({ "value": id })).collect();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": name,
        "members": members,
    });
    let (status, group) = app
        .send_json("POST", "/scim/v2/Groups", &tenant.token, &body)
        .await;
    assert_eq!(status, 201, "{group}");
    group["id"].as_str().unwrap().to_owned()
}

async fn patch_members(
    app: &TestApp,
    tenant: &Tenant,
    group: &str,
    op: &str,
    member: &str,
) -> (u16, Value) {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": "members", "value": [{"value": member}]}],
    });
    let path = format!("/scim/v2/Groups/{group}");
    app.send_json("PATCH", &path, &tenant.token, &body).await
}

async fn set_roles(app: &TestApp, tenant: &Tenant, member: &str, roles: &[&str]) -> (u16, Value) {
    let path = api(&format!("/members/{member}/roles"));
    app.send_json("PUT", &path, &tenant.token, &json!({ "roles": roles }))
        .await
}

async fn resource(app: &TestApp, tenant: &Tenant, body: Value) -> Value {
    let (status, created) = app
        .send_json("POST", &api("/resources"), &tenant.token, &body)
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn source(app: &TestApp, tenant: &Tenant, name: &str, labels: &[&str]) -> String {
    let created = resource(
        app,
        tenant,
        json!({"kind": "source", "name": name, "labels": labels}),
    )
    .await;
    created["id"].as_str().unwrap().to_owned()
}

async fn grant(app: &TestApp, tenant: &Tenant, body: Value) -> Value {
    let (status, created) = app
        .send_json("POST", &api("/grants"), &tenant.token, &body)
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn decide(
    app: &TestApp,
    tenant: &Tenant,
    subject: &str,
    action: &str,
    resource: Option<&str>,
) -> Value {
    let (status, decision) = app
        .send_json(
            "POST",
            &api("/authorize"),
            &tenant.token,
            &json!({ "subject": subject, "action": action, "resource": resource }),
        )
        .await;
    assert_eq!(status, 200, "{decision}");
    decision
}

async fn allowed(
    app: &TestApp,
    tenant: &Tenant,
    subject: &str,
    action: &str,
    resource: Option<&str>,
) -> bool {
    decide(app, tenant, subject, action, resource).await["allowed"]
        .as_bool()
        .unwrap()
}

async fn the_role_matrix_decides_through_the_api(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let roles = [Role::Owner, Role::Admin, Role::Member, Role::ReadOnly];
    let mut people = Vec::new();
    for role in roles {
        let name = format!("{role}@example.com");
        let id = user(&app, &tenant, &name).await;
        assert_eq!(set_roles(&app, &tenant, &id, &[role.as_str()]).await.0, 200);
        people.push((role, name));
    }
    let mut checks = Vec::new();
    let mut expected = Vec::new();
    for (role, name) in &people {
        for action in Action::ALL {
            checks.push(json!({ "subject": name, "action": action.as_str() }));
            expected.push((*role, *action, role.allows(*action, true)));
        }
    }
    assert_eq!(checks.len(), 4 * 17);
    let (status, answer) = app
        .send_json(
            "POST",
            &api("/authorize"),
            &tenant.token,
            &json!({ "checks": checks }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    for ((role, action, allowed), result) in expected.iter().zip(results) {
        assert_eq!(
            result["allowed"],
            json!(allowed),
            "{role} {action}: {result}"
        );
    }

    // The workspace setting decides whether Members publish tracking plans.
    assert!(
        !allowed(
            &app,
            &tenant,
            "member@example.com",
            "tracking_plans.publish",
            None
        )
        .await
    );
    let (status, _) = app
        .send_json(
            "PATCH",
            "/api/v1/workspaces/acme",
            &tenant.token,
            &json!({"tracking_plan_approval": false}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        allowed(
            &app,
            &tenant,
            "member@example.com",
            "tracking_plans.publish",
            None
        )
        .await
    );

    // A token is a subject too: its scopes stand in for roles.
    let reader = app.token_for(&tenant.workspace, "sources:read");
    assert!(allowed(&app, &tenant, &reader.token.id, "sources.view", None).await);
    assert!(
        !allowed(
            &app,
            &tenant,
            &format!("token:{}", reader.token.id),
            "sources.create",
            None
        )
        .await
    );
    let revoked = app.token_for(&tenant.workspace, "workspace:read");
    assert!(allowed(&app, &tenant, &revoked.token.id, "workspace.view", None).await);
    let path = format!("/api/v1/workspaces/acme/tokens/{}", revoked.token.id);
    let (status, _) = app
        .send_json("DELETE", &path, &tenant.token, &json!({}))
        .await;
    assert!(status < 300, "revoked: {status}");
    assert!(
        !allowed(&app, &tenant, &revoked.token.id, "workspace.view", None).await,
        "a revoked token may do nothing"
    );
    let nobody = decide(&app, &tenant, "nobody@example.com", "workspace.view", None).await;
    assert_eq!(nobody["allowed"], false);
    assert!(
        nobody["reason"]
            .as_str()
            .unwrap()
            .contains("no such member"),
        "{nobody}"
    );
}

async fn roles_add_up_from_groups_and_direct_assignment(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let ann = user(&app, &tenant, "ann@example.com").await;
    set_roles(&app, &tenant, &ann, &["read-only"]).await;
    let admins = group(&app, &tenant, "segment-admins", &[]).await;
    group(&app, &tenant, "segment-analysts", &[&ann]).await;

    // An unmapped group grants nothing.
    assert!(!allowed(&app, &tenant, &ann, "team.manage", None).await);

    cli_succeeds(
        &app,
        &[
            "mapping",
            "set",
            "--workspace",
            "acme",
            "--idp-group",
            "Segment-Admins",
            "--role",
            "admin",
        ],
    )
    .await;
    // Decided, and kept, at the access version the mapping left; joining the group raises it.
    assert!(!allowed(&app, &tenant, &ann, "team.manage", None).await);
    assert_eq!(
        patch_members(&app, &tenant, &admins, "add", &ann).await.0,
        204
    );
    let decision = decide(&app, &tenant, "ANN@example.com", "team.manage", None).await;
    assert_eq!(decision["allowed"], true, "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("segment-admins"),
        "{decision}"
    );

    let (_, explained) = app
        .get(&api(&format!("/members/{ann}/permissions")), &tenant.token)
        .await;
    let roles = &explained["member"]["roles"];
    assert_eq!(
        roles,
        &json!([{"role": "admin", "via": "group", "group": "segment-admins"}, {"role": "read-only", "via": "direct"}]),
        "{explained}"
    );
    assert_eq!(explained["permissions"]["team.manage"]["allowed"], true);
    assert_eq!(explained["permissions"]["billing.manage"]["allowed"], false);

    // Leaving the group takes the role away at once; the direct role stays.
    assert_eq!(
        patch_members(&app, &tenant, &admins, "remove", &ann)
            .await
            .0,
        204
    );
    assert!(!allowed(&app, &tenant, &ann, "team.manage", None).await);
    assert!(allowed(&app, &tenant, &ann, "sources.view", None).await);

    // So does changing the mapping.
    patch_members(&app, &tenant, &admins, "add", &ann).await;
    let (status, _) = app
        .send_json(
            "PUT",
            &api("/group-mappings/segment-admins"),
            &tenant.token,
            &json!({"role": "member"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(!allowed(&app, &tenant, &ann, "team.manage", None).await);
    assert!(allowed(&app, &tenant, &ann, "sources.create", None).await);

    let listed = app.cli(&["mapping", "list", "--workspace", "acme"]).await;
    assert_eq!(
        stdout(&listed),
        "segment-admins\tmember\n",
        "named as last set"
    );
    let (_, members) = app.get(&api("/members"), &tenant.token).await;
    assert_eq!(
        members["members"][0]["roles"].as_array().unwrap().len(),
        2,
        "{members}"
    );
}

async fn label_grants_reach_resources_labelled_later(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let dev = user(&app, &tenant, "dev@example.com").await;
    set_roles(&app, &tenant, &dev, &["member"]).await;
    grant(&app, &tenant, json!({"member": "dev@example.com", "label": "environment:production", "level": "read_only"})).await;
    let web = source(&app, &tenant, "web", &[]).await;
    assert!(
        allowed(&app, &tenant, &dev, "sources.edit", Some(&web)).await,
        "Member default"
    );

    let (status, labelled) = app
        .send_json(
            "PATCH",
            &api(&format!("/resources/{web}")),
            &tenant.token,
            &json!({"labels": ["environment:production"]}),
        )
        .await;
    assert_eq!(status, 200, "{labelled}");
    let decision = decide(&app, &tenant, &dev, "sources.edit", Some(&web)).await;
    assert_eq!(decision["allowed"], false, "{decision}");
    assert!(allowed(&app, &tenant, &dev, "sources.view", Some(&web)).await);

    // A destination of the source inherits the label's grant.
    let destination = resource(
        &app,
        &tenant,
        json!({"kind": "destination", "name": "warehouse", "source_id": web}),
    )
    .await;
    let destination = destination["id"].as_str().unwrap();
    assert!(!allowed(&app, &tenant, &dev, "destinations.edit", Some(destination)).await);
    assert!(allowed(&app, &tenant, &dev, "destinations.view", Some(destination)).await);
}

async fn temporary_grants_expire(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let auditor = user(&app, &tenant, "auditor@example.com").await;
    set_roles(&app, &tenant, &auditor, &["read-only"]).await;
    let web = source(&app, &tenant, "web", &[]).await;
    assert!(!allowed(&app, &tenant, &auditor, "sources.delete", Some(&web)).await);

    let elevation = grant(
        &app,
        &tenant,
        json!({"member": auditor, "resource": web, "level": "full_access", "expires_in": "1h", "justification": "incident 42"}),
    )
    .await;
    assert!(elevation["expires_at"].is_string(), "{elevation}");
    assert!(allowed(&app, &tenant, &auditor, "sources.delete", Some(&web)).await);

    // A short elevation ends by itself, though nothing changes in the workspace and the
    // decision was cached while it was live.
    let soon = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let short = json!({"member": auditor, "resource": web, "level": "full_access", "expires_at": soon.to_rfc3339()});
    let path = api(&format!("/grants/{}", elevation["id"].as_str().unwrap()));
    assert_eq!(
        app.send_json("DELETE", &path, &tenant.token, &json!({}))
            .await
            .0,
        204
    );
    grant(&app, &tenant, short).await;
    assert!(allowed(&app, &tenant, &auditor, "sources.delete", Some(&web)).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let decision = loop {
        let decision = decide(&app, &tenant, &auditor, "sources.delete", Some(&web)).await;
        if decision["allowed"] == false || std::time::Instant::now() > deadline {
            break decision;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(decision["allowed"], false, "{decision}");
    assert!(
        decision["reason"].as_str().unwrap().contains("read-only"),
        "{decision}"
    );

    let (status, refused) = app
        .send_json("POST", &api("/grants"), &tenant.token, &json!({"member": auditor, "resource": web, "level": "full_access", "expires_at": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_request")),
        "{refused}"
    );
}

async fn no_access_hides_resources_from_lists(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let dev = user(&app, &tenant, "dev@example.com").await;
    set_roles(&app, &tenant, &dev, &["member"]).await;
    let payments = source(&app, &tenant, "payments", &["data:pii"]).await;
    let web = source(&app, &tenant, "web", &[]).await;
    let stripe = resource(
        &app,
        &tenant,
        json!({"kind": "destination", "name": "stripe", "source_id": payments}),
    )
    .await;
    grant(
        &app,
        &tenant,
        json!({"member": dev, "resource": payments, "level": "no_access"}),
    )
    .await;

    let visible = |answer: &Value| -> Vec<String> {
        answer["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, listed) = app
        .get(&api("/resources?visible_to=dev@example.com"), &tenant.token)
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        visible(&listed),
        ["web"],
        "the source and its destination are hidden"
    );
    assert_eq!(listed["resources"][0]["level"], "read_write");
    let (_, everything) = app.get(&api("/resources"), &tenant.token).await;
    assert_eq!(visible(&everything), ["stripe", "payments", "web"]);
    assert!(
        !allowed(
            &app,
            &tenant,
            &dev,
            "destinations.view",
            stripe["id"].as_str()
        )
        .await
    );

    // A group grant on the label raises the direct No Access.
    group(&app, &tenant, "data-team", &[&dev]).await;
    grant(
        &app,
        &tenant,
        json!({"group": "Data-Team", "label": "data:pii", "level": "read_only"}),
    )
    .await;
    let (_, listed) = app
        .get(
            &api("/resources?visible_to=dev@example.com&kind=source"),
            &tenant.token,
        )
        .await;
    assert_eq!(visible(&listed), ["payments", "web"]);
    assert!(allowed(&app, &tenant, &dev, "sources.view", Some(&payments)).await);
    assert!(!allowed(&app, &tenant, &dev, "sources.edit", Some(&payments)).await);
    assert!(allowed(&app, &tenant, &dev, "sources.edit", Some(&web)).await);
}

async fn the_last_owner_cannot_be_taken_away(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let ann = user(&app, &tenant, "ann@example.com").await;
    let bob = user(&app, &tenant, "bob@example.com").await;
    cli_succeeds(
        &app,
        &[
            "role",
            "set",
            "--workspace",
            "acme",
            "--member",
            "ann@example.com",
            "--roles",
            "owner",
        ],
    )
    .await;

    let (status, refused) = set_roles(&app, &tenant, &ann, &["admin"]).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("last_owner")),
        "{refused}"
    );
    assert!(
        allowed(&app, &tenant, &ann, "ownership.transfer", None).await,
        "nothing changed"
    );

    // Deprovisioning the last Owner over SCIM is refused too, with a SCIM error.
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let (status, refused) = app
        .send_json(
            "PATCH",
            &format!("/scim/v2/Users/{ann}"),
            &tenant.token,
            &deactivate,
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("without an Owner"),
        "{refused}"
    );
    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("/scim/v2/Users/{ann}"),
            &tenant.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // Ownership through a group: the group's last member and its mapping are protected alike.
    let owners = group(&app, &tenant, "owners", &[&bob]).await;
    app.send_json(
        "PUT",
        &api("/group-mappings/owners"),
        &tenant.token,
        &json!({"role": "owner"}),
    )
    .await;
    assert_eq!(
        set_roles(&app, &tenant, &ann, &["admin"]).await.0,
        200,
        "bob is an Owner now"
    );
    assert_eq!(
        patch_members(&app, &tenant, &owners, "remove", &bob)
            .await
            .0,
        409
    );
    // Renamed, the group would leave its mapping, and bob his ownership.
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "former owners"}],
    });
    let path = format!("/scim/v2/Groups/{owners}");
    let (status, refused) = app.send_json("PATCH", &path, &tenant.token, &rename).await;
    assert_eq!(status, 409, "{refused}");
    let (status, refused) = app
        .send_json(
            "DELETE",
            &api("/group-mappings/owners"),
            &tenant.token,
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("last_owner"))
    );
    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("/scim/v2/Groups/{owners}"),
            &tenant.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
    assert!(allowed(&app, &tenant, &bob, "billing.manage", None).await);

    // Only an Owner transfers ownership.
    let not_owner = app
        .cli(&[
            "role",
            "transfer-ownership",
            "--workspace",
            "acme",
            "--from",
            "ann@example.com",
            "--to",
            "bob@example.com",
        ])
        .await;
    assert!(failure_line(&not_owner).contains("not an Owner"));
    set_roles(&app, &tenant, &ann, &["owner"]).await;
    cli_succeeds(
        &app,
        &[
            "role",
            "transfer-ownership",
            "--workspace",
            "acme",
            "--from",
            "ann@example.com",
            "--to",
            "bob@example.com",
        ],
    )
    .await;
    assert!(!allowed(&app, &tenant, &ann, "ownership.transfer", None).await);
    let (_, bob_roles) = app
        .get(&api(&format!("/members/{bob}/permissions")), &tenant.token)
        .await;
    assert!(
        bob_roles["member"]["roles"]
            .as_array()
            .unwrap()
            .contains(&json!({"role": "owner", "via": "direct"}))
    );
}

async fn workspaces_never_see_each_other(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let acme = app.tenant("acme", ALL);
    let globex = app.tenant("globex", ALL);
    let ann = user(&app, &acme, "ann@example.com").await;
    set_roles(&app, &acme, &ann, &["admin"]).await;
    let web = source(&app, &acme, "web", &[]).await;

    // Globex's token on Acme's paths: as if Acme did not exist.
    let (status, _) = app
        .get(&api(&format!("/members/{ann}/permissions")), &globex.token)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.get(&api("/resources"), &globex.token).await;
    assert_eq!(status, 404);

    // Acme's ids in Globex's workspace: unknown there.
    let globex_api = |path: &str| format!("/api/v1/workspaces/globex{path}");
    let (status, _) = app
        .get(
            &globex_api(&format!("/members/{ann}/permissions")),
            &globex.token,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&globex_api(&format!("/resources/{web}")), &globex.token)
        .await;
    assert_eq!(status, 404);
    let (_, decision) = app
        .send_json(
            "POST",
            &globex_api("/authorize"),
            &globex.token,
            &json!({"subject": ann, "action": "workspace.view"}),
        )
        .await;
    assert_eq!(decision["allowed"], false, "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("no such member"),
        "{decision}"
    );
    let (_, decision) = app
        .send_json(
            "POST",
            &globex_api("/authorize"),
            &globex.token,
            &json!({"subject": acme.token_id, "action": "workspace.view"}),
        )
        .await;
    assert_eq!(
        decision["allowed"], false,
        "another workspace's token is no subject here"
    );
    let (status, _) = app
        .send_json(
            "POST",
            &globex_api("/authorize"),
            &globex.token,
            &json!({"subject": "x@example.com", "action": "sources.view", "resource": web}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = app
        .send_json(
            "POST",
            &globex_api("/grants"),
            &globex.token,
            &json!({"member": ann, "resource": web, "level": "full_access"}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, listed) = app.get(&globex_api("/resources"), &globex.token).await;
    assert_eq!(listed["resources"], json!([]));
}

async fn the_seeds_example_end_to_end(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let developer = user(&app, &tenant, "developer@company.com").await;
    set_roles(&app, &tenant, &developer, &["member"]).await;
    let production = ["environment:production"];
    let staging = ["environment:staging"];
    let sources = [
        ("Production Web", &production[..], "read_only"),
        ("Production Mobile", &production[..], "read_only"),
        ("Staging Web", &staging[..], "full_access"),
        ("Staging Mobile", &staging[..], "full_access"),
        ("Server (Node)", &[][..], "read_write"),
        ("Development", &[][..], "full_access"),
    ];
    let mut ids = Vec::new();
    for (name, labels, _) in sources {
        ids.push(source(&app, &tenant, name, labels).await);
    }
    let evidence = json!({
        "justification": "Implementation engineer requires staging access for integration work.",
        "approver": "admin@company.com",
        "review_date": "2024-04-15",
    });
    let with_evidence = |mut body: Value| {
        body.as_object_mut()
            .unwrap()
            .extend(evidence.as_object().unwrap().clone());
        body
    };
    grant(&app, &tenant, with_evidence(json!({"member": "developer@company.com", "label": "environment:production", "level": "read_only"}))).await;
    grant(&app, &tenant, with_evidence(json!({"member": "developer@company.com", "label": "environment:staging", "level": "full_access"}))).await;
    grant(
        &app,
        &tenant,
        with_evidence(
            json!({"member": "developer@company.com", "resource": ids[5], "level": "full_access"}),
        ),
    )
    .await;

    let (status, explained) = app
        .get(
            &api("/members/developer@company.com/permissions"),
            &tenant.token,
        )
        .await;
    assert_eq!(status, 200, "{explained}");
    for (name, _, level) in sources {
        let entry = explained["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"]["name"] == name)
            .unwrap();
        assert_eq!(entry["level"], level, "{name}: {entry}");
    }
    let production_web = explained["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"]["name"] == "Production Web")
        .unwrap();
    assert_eq!(
        production_web["grants"][0]["target"],
        json!({"label": "environment:production"})
    );
    assert!(!allowed(&app, &tenant, &developer, "sources.edit", Some(&ids[0])).await);
    assert!(allowed(&app, &tenant, &developer, "sources.delete", Some(&ids[2])).await);
    assert!(!allowed(&app, &tenant, &developer, "sources.delete", Some(&ids[4])).await);
    assert!(allowed(&app, &tenant, &developer, "sources.edit", Some(&ids[4])).await);

    // The access review carries the evidence, and the token inventory.
    let (status, review) = app.get(&api("/access-review"), &tenant.token).await;
    assert_eq!(status, 200, "{review}");
    let member = &review["members"][0];
    assert_eq!(member["user_name"], "developer@company.com");
    assert_eq!(member["grants"].as_array().unwrap().len(), 3);
    assert_eq!(member["grants"][0]["approver"], "admin@company.com");
    assert_eq!(review["tokens"][0]["id"], tenant.token_id.as_str());
    let review_csv = || async {
        let mut response = app
            .client
            .get(app.url(&api("/access-review?format=csv")))
            .bearer_auth(&tenant.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
    };
    let csv = review_csv().await;
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("record,subject,subject_id,active,role,via,resource,label,level"),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("role,developer@company.com,") && l.contains(",member,direct,")),
        "{csv}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("2024-04-15") && l.contains("admin@company.com"))
            .count(),
        3,
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("token,") && l.contains(&tenant.token_id)),
        "{csv}"
    );
    assert!(!csv.contains(&tenant.token), "never a secret");

    // A cell a client wrote is text to a spreadsheet, never a formula.
    let formula = "=HYPERLINK(\"http://evil.example\",\"open\")";
    grant(
        &app,
        &tenant,
        json!({"member": "developer@company.com", "resource": ids[0], "level": "read_only", "justification": formula}),
    )
    .await;
    let csv = review_csv().await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let cells: Vec<String> = reader
        .records()
        .flat_map(|record| {
            record
                .unwrap()
                .iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        cells.iter().any(|cell| cell == &format!("'{formula}")),
        "{csv}"
    );
    assert!(!cells.iter().any(|cell| cell.starts_with('=')), "{csv}");
}

async fn write_keys_send_only_to_their_own_source(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let web = resource(&app, &tenant, json!({"kind": "source", "name": "web"})).await;
    let ios = resource(&app, &tenant, json!({"kind": "source", "name": "ios"})).await;
    let key = web["write_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("wk_") && key != ios["write_key"].as_str().unwrap());
    let verify = |key: String, source: Value| {
        let app = &app;
        async move {
            let (status, answer) = app
                .send_json(
                    "POST",
                    "/api/v1/write-keys/verify",
                    "",
                    &json!({"write_key": key, "source_id": source}),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
            answer["valid"].as_bool().unwrap()
        }
    };
    assert!(verify(key.clone(), web["id"].clone()).await);
    assert!(
        !verify(key.clone(), ios["id"].clone()).await,
        "not to another source"
    );
    let (_, shown) = app
        .get(
            &api(&format!("/resources/{}", web["id"].as_str().unwrap())),
            &tenant.token,
        )
        .await;
    assert!(shown.get("write_key").is_none(), "shown once only: {shown}");

    let rotate = |resource: &Value| {
        let path = api(&format!(
            "/resources/{}/write-key",
            resource["id"].as_str().unwrap()
        ));
        let app = &app;
        let token = tenant.token.clone();
        async move { app.send_json("POST", &path, &token, &json!({})).await }
    };
    let (status, rotated) = rotate(&web).await;
    assert_eq!(status, 200);
    let new_key = rotated["write_key"].as_str().unwrap().to_owned();
    assert!(
        !verify(key, web["id"].clone()).await,
        "the old key stops working"
    );
    assert!(verify(new_key, web["id"].clone()).await);

    let destination = resource(
        &app,
        &tenant,
        json!({"kind": "destination", "name": "d", "source_id": web["id"]}),
    )
    .await;
    assert!(destination.get("write_key").is_none());
    assert_eq!(rotate(&destination).await.0, 400);
}

async fn every_access_change_is_audited(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let ann = user(&app, &tenant, "ann@example.com").await;
    set_roles(&app, &tenant, &ann, &["member"]).await;
    set_roles(&app, &tenant, &ann, &["admin"]).await;
    app.send_json(
        "PUT",
        &api("/group-mappings/eng"),
        &tenant.token,
        &json!({"role": "member"}),
    )
    .await;
    app.send_json(
        "DELETE",
        &api("/group-mappings/eng"),
        &tenant.token,
        &json!({}),
    )
    .await;
    app.send_json(
        "PUT",
        &api("/attribute-mapping"),
        &tenant.token,
        &json!({"preset": "entra"}),
    )
    .await;
    let web = source(&app, &tenant, "web", &["env:prod"]).await;
    app.send_json(
        "PATCH",
        &api(&format!("/resources/{web}")),
        &tenant.token,
        &json!({"labels": ["env:dev"]}),
    )
    .await;
    app.send_json(
        "POST",
        &api(&format!("/resources/{web}/write-key")),
        &tenant.token,
        &json!({}),
    )
    .await;
    let given = grant(
        &app,
        &tenant,
        json!({"member": ann, "resource": web, "level": "read_only"}),
    )
    .await;
    let path = api(&format!("/grants/{}", given["id"].as_str().unwrap()));
    assert_eq!(
        app.send_json("DELETE", &path, &tenant.token, &json!({}))
            .await
            .0,
        204
    );
    app.send_json(
        "DELETE",
        &api(&format!("/resources/{web}")),
        &tenant.token,
        &json!({}),
    )
    .await;

    let (_, log) = app.get(&api("/audit?limit=1000"), &tenant.token).await;
    let events = log["events"].as_array().unwrap();
    let find =
        |action: &str| -> Vec<&Value> { events.iter().filter(|e| e["action"] == action).collect() };
    let roles = find("access.roles.changed");
    assert_eq!(roles.len(), 2);
    assert_eq!(
        roles[0]["details"]["before"],
        json!(["member"]),
        "newest first: {}",
        roles[0]
    );
    assert_eq!(roles[0]["details"]["after"], json!(["admin"]));
    assert_eq!(
        roles[0]["actor"],
        json!({"type": "token", "id": tenant.token_id})
    );
    assert_eq!(
        find("access.mapping.set")[0]["details"],
        json!({"before": null, "after": "member"})
    );
    assert_eq!(find("access.mapping.removed").len(), 1);
    assert_eq!(
        find("access.attributes.changed")[0]["details"]["after"]["preset"],
        "entra"
    );
    assert_eq!(find("resource.created").len(), 1);
    let relabelled = find("resource.updated");
    assert_eq!(
        relabelled[0]["details"]["before"]["labels"],
        json!(["env:prod"])
    );
    assert_eq!(
        relabelled[0]["details"]["after"]["labels"],
        json!(["env:dev"])
    );
    assert_eq!(find("resource.write_key.rotated").len(), 1);
    assert_eq!(find("access.grant.created").len(), 1);
    assert_eq!(find("access.grant.revoked").len(), 1);
    assert_eq!(find("resource.deleted").len(), 1);
    let log_text = log.to_string();
    assert!(!log_text.contains("wk_"), "no write key in the log");
}

async fn bad_requests_are_400_and_change_nothing(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let ann = user(&app, &tenant, "ann@example.com").await;
    let web = source(&app, &tenant, "web", &[]).await;
    let destination = resource(
        &app,
        &tenant,
        json!({"kind": "destination", "name": "d", "source_id": web}),
    )
    .await;
    let cases = [
        (
            "POST",
            api("/authorize"),
            json!({"subject": ann, "action": "sources.launch"}),
        ),
        (
            "POST",
            api("/authorize"),
            json!({"subject": ann, "action": "sources.edit", "resource": "nope"}),
        ),
        (
            "POST",
            api("/authorize"),
            json!({"subject": ann, "action": "sources.edit", "resource": destination["id"]}),
        ),
        ("POST", api("/authorize"), json!({"who": ann})),
        (
            "PUT",
            api(&format!("/members/{ann}/roles")),
            json!({"roles": ["superuser"]}),
        ),
        ("PUT", api("/group-mappings/eng"), json!({"role": "root"})),
        (
            "POST",
            api("/resources"),
            json!({"kind": "destination", "name": "d", "labels": ["env:prod"], "source_id": web}),
        ),
        (
            "POST",
            api("/resources"),
            json!({"kind": "destination", "name": "orphan"}),
        ),
        (
            "POST",
            api("/resources"),
            json!({"kind": "source", "name": "x", "labels": ["no-colon"]}),
        ),
        (
            "POST",
            api("/resources"),
            json!({"kind": "rocket", "name": "x"}),
        ),
        (
            "POST",
            api("/grants"),
            json!({"member": ann, "group": "eng", "resource": web, "level": "read_only"}),
        ),
        (
            "POST",
            api("/grants"),
            json!({"member": ann, "resource": web, "level": "owner"}),
        ),
        (
            "POST",
            api("/grants"),
            json!({"member": ann, "resource": web, "level": "read_only", "review_date": "next spring"}),
        ),
        ("PUT", api("/attribute-mapping"), json!({"preset": "myidp"})),
    ];
    let (_, before) = app.get(&api("/audit?limit=1000"), &tenant.token).await;
    for (method, path, body) in cases {
        let (status, answer) = app.send_json(method, &path, &tenant.token, &body).await;
        assert_eq!(status, 400, "{method} {path} {body}: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
    }
    let (status, _) = app
        .get(
            &api("/members/nobody@example.com/permissions"),
            &tenant.token,
        )
        .await;
    assert_eq!(status, 404);
    let (_, after) = app.get(&api("/audit?limit=1000"), &tenant.token).await;
    assert_eq!(before["events"], after["events"], "nothing changed");

    // Scopes: a token that reads cannot change, and tracking plans need their own scope.
    let reader = app.token_for(&tenant.workspace, "workspace:read,sources:read");
    let roles_path = api(&format!("/members/{ann}/roles"));
    let (status, _) = app
        .send_json(
            "PUT",
            &roles_path,
            &reader.secret,
            &json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .send_json(
            "POST",
            &api("/resources"),
            &reader.secret,
            &json!({"kind": "source", "name": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .get(&api("/resources?kind=tracking_plan"), &reader.secret)
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.get(&api("/access-review"), &reader.secret).await;
    assert_eq!(status, 403);
}

async fn set_active(app: &TestApp, tenant: &Tenant, user: &str, active: bool) -> u16 {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": active}],
    });
    let path = format!("/scim/v2/Users/{user}");
    app.send_json("PATCH", &path, &tenant.token, &body).await.0
}

async fn deprovisioning_removes_access_and_reactivation_restores_the_least(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let ann = user(&app, &tenant, "ann@example.com").await;
    let owner = user(&app, &tenant, "owner@example.com").await;
    set_roles(&app, &tenant, &owner, &["owner"]).await;
    set_roles(&app, &tenant, &ann, &["admin"]).await;
    let web = source(&app, &tenant, "web", &[]).await;
    grant(
        &app,
        &tenant,
        json!({"member": ann, "resource": web, "level": "full_access"}),
    )
    .await;

    assert_eq!(set_active(&app, &tenant, &ann, false).await, 200);
    let decision = decide(&app, &tenant, &ann, "workspace.view", None).await;
    assert_eq!(decision["allowed"], false);
    assert!(
        decision["reason"].as_str().unwrap().contains("deactivated"),
        "{decision}"
    );
    let (_, grants) = app.get(&api("/grants"), &tenant.token).await;
    assert_eq!(
        grants["grants"],
        json!([]),
        "direct grants go with the access"
    );

    assert_eq!(set_active(&app, &tenant, &ann, true).await, 200);
    assert!(allowed(&app, &tenant, &ann, "workspace.view", None).await);
    assert!(
        !allowed(&app, &tenant, &ann, "team.manage", None).await,
        "not the old Admin role"
    );
    assert!(
        !allowed(&app, &tenant, &ann, "sources.edit", Some(&web)).await,
        "Read-Only"
    );

    let (_, log) = app
        .get(&api("/audit?action=scim.user.deactivated"), &tenant.token)
        .await;
    assert_eq!(
        log["events"][0]["details"]["access"],
        json!({"roles_removed": ["admin"], "grants_removed": 1, "sessions_ended": 0, "tokens_revoked": 0})
    );

    // A deleted member's grants are gone with them.
    grant(
        &app,
        &tenant,
        json!({"member": ann, "resource": web, "level": "read_write"}),
    )
    .await;
    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("/scim/v2/Users/{ann}"),
            &tenant.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (_, grants) = app.get(&api("/grants"), &tenant.token).await;
    assert_eq!(grants["grants"], json!([]));
}

async fn a_change_through_one_replica_is_decided_at_once_by_another(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    let replica = app.spawn_replica().await;
    let ann = user(&app, &tenant, "ann@example.com").await;
    set_roles(&app, &tenant, &ann, &["member"]).await;
    let web = source(&app, &tenant, "web", &[]).await;
    let ask_replica = || async {
        let mut response = app
            .client
            .post(format!("{replica}{}", api("/authorize")))
            .bearer_auth(&tenant.token)
            .send_json(&json!({"subject": ann, "action": "sources.edit", "resource": web}))
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        body["allowed"].as_bool().unwrap()
    };
    assert!(
        ask_replica().await,
        "the replica has now cached ann and web"
    );

    grant(
        &app,
        &tenant,
        json!({"member": ann, "resource": web, "level": "read_only"}),
    )
    .await;
    assert!(
        !ask_replica().await,
        "a grant made through the other server counts at once"
    );
    cli_succeeds(
        &app,
        &[
            "role",
            "set",
            "--workspace",
            "acme",
            "--member",
            "ann@example.com",
            "--roles",
            "admin",
        ],
    )
    .await;
    assert!(
        ask_replica().await,
        "so does a role given from the command line"
    );
}

async fn a_name_is_resolved_afresh_for_every_decision(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", ALL);
    // Ann's email is the userName someone else will be created with.
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "ann",
        "emails": [{"value": "shared@example.com"}],
    });
    let (status, ann) = app
        .send_json("POST", "/scim/v2/Users", &tenant.token, &body)
        .await;
    assert_eq!(status, 201);
    set_roles(&app, &tenant, ann["id"].as_str().unwrap(), &["admin"]).await;
    assert!(allowed(&app, &tenant, "shared@example.com", "team.manage", None).await);

    user(&app, &tenant, "shared@example.com").await;
    let decision = decide(&app, &tenant, "shared@example.com", "team.manage", None).await;
    assert_eq!(
        decision["allowed"], false,
        "the new user, not Ann: {decision}"
    );
}
