//! The admin console: in a real headless Chromium (an Owner's whole setup, a setup link, a
//! Member's view), and over HTTP for the checks a browser would hide (CSRF, origin, headers,
//! links that work once or until revoked).

use std::time::Duration;

use fantoccini::Locator;
use idgate::outbound::InternalAllowList;
use serde_json::{Value, json};

use crate::browser::{Browser, IdpServer};
use crate::helpers::{TestApp, TestDatabase, stdout};
use crate::on_both_databases;

on_both_databases!(
    an_owner_sets_up_sign_in_and_provisioning_in_the_browser,
    a_setup_link_opens_only_its_pages_until_revoked,
    a_member_cannot_reach_the_admin_pages,
    forms_need_the_csrf_token_and_this_origin,
    a_bootstrap_link_works_once_and_expires,
    only_an_owner_makes_setup_links_and_scim_tokens,
    a_setup_links_forms_need_its_token_and_this_origin,
    a_setup_link_revokes_only_tokens_made_through_setup_links,
    grants_are_given_and_revoked_in_the_console,
);

/// The last line the CLI printed, with the server's own origin (the CLI prints the configured
/// base URL, and a test's server listens on a port of its own).
fn link_on(app: &TestApp, printed: &str) -> String {
    let url = url::Url::parse(printed.lines().last().expect("a line")).expect("a URL");
    app.url(url.path())
}

async fn bootstrap_link(app: &TestApp, email: &str) -> String {
    let output = app
        .cli(&["console", "link", "--workspace", "acme", "--email", email])
        .await;
    assert!(output.status.success(), "{output:?}");
    link_on(app, &stdout(&output))
}

/// A client that answers a redirect with the redirect itself, as the tests look at it.
fn client() -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

/// POSTs a form as a browser on this origin would, with the session cookie.
async fn post_form(
    app: &TestApp,
    path: &str,
    session: &str,
    fields: &[(&str, &str)],
    site: &str,
) -> (u16, String) {
    let mut response = client()
        .post(app.url(path))
        .insert_header(session_cookie(session))
        .insert_header(("Sec-Fetch-Site", site))
        .send_form(&fields)
        .await
        .expect("the server answers");
    let body = response.body().await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn get_page(app: &TestApp, path: &str, session: &str) -> (u16, String) {
    let mut response = client()
        .get(app.url(path))
        .insert_header(session_cookie(session))
        .send()
        .await
        .expect("the server answers");
    let body = response.body().limit(4 << 20).await.expect("a body");
    (
        response.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Spends a bootstrap link over HTTP and returns the session cookie's value.
async fn sign_in_with_link(link: &str) -> String {
    let response = client()
        .post(link)
        .insert_header(("Sec-Fetch-Site", "same-origin"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 303);
    let set_cookie = response
        .headers()
        .get_all("set-cookie")
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("idgate_session="))
        .expect("a session cookie");
    set_cookie["idgate_session=".len()..]
        .split(';')
        .next()
        .expect("its value")
        .to_owned()
}

fn session_cookie(session: &str) -> (&'static str, String) {
    ("Cookie", format!("idgate_session={session}"))
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[start..]
        .split('"')
        .next()
        .expect("the value")
        .to_owned()
}

async fn scim(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let mut response = client()
        .post(app.url(path))
        .bearer_auth(token)
        .content_type("application/scim+json")
        .send_body(body.to_string())
        .await
        .expect("the server answers");
    assert_eq!(response.status().as_u16(), 201, "{path}");
    serde_json::from_slice(&response.body().await.expect("a body")).expect("JSON")
}

async fn an_owner_sets_up_sign_in_and_provisioning_in_the_browser(database: TestDatabase) {
    let allowed = InternalAllowList::parse("127.0.0.1/32").unwrap();
    let app = TestApp::spawn_with(database, |settings| {
        settings.allowed_internal_hosts = allowed.clone();
    })
    .await;
    app.tenant("acme", "workspace:read");
    let idp = IdpServer::start(&app.url(""), "acme", "dev@acme.test", &["Engineering"]).await;
    let link = bootstrap_link(&app, "owner@acme.test").await;
    let browser = Browser::start().await;

    // The bootstrap link asks first, then signs the Owner in.
    browser.open(&link).await;
    assert_eq!(browser.heading().await, "Sign in to acme");
    browser.click("Sign in as owner@acme.test").await;
    let text = browser.wait_for_text("setup steps done").await;
    assert!(text.contains("0 of 5 setup steps done"), "{text}");
    assert!(text.contains("owner@acme.test"), "{text}");
    browser.screenshot("overview").await;

    // Connect the IdP from its metadata URL.
    browser.click("IdP connection").await;
    browser.wait_for_text("Give your IdP these values").await;
    assert_eq!(
        browser.text_of("sp-acs").await,
        app.url("/saml/acme/acs"),
        "the ACS URL to paste"
    );
    browser
        .fill("IdP metadata URL", &format!("{}/metadata", idp.url))
        .await;
    browser.click("Save the IdP").await;
    let text = browser.wait_for_text("Saved.").await;
    assert!(text.contains(&idp.idp.entity_id), "{text}");
    assert!(text.contains("valid"), "the certificate's status: {text}");
    browser.screenshot("idp-connection").await;

    // Issue a SCIM token: shown once, on the page answered.
    browser.click("Provisioning (SCIM)").await;
    browser.wait_for_text("SCIM base URL").await;
    browser.fill("Token name", "Okta provisioning").await;
    browser.click("Create SCIM token").await;
    browser.wait_for_text("It is not shown again").await;
    let secret = browser.text_of("token-secret").await;
    assert!(secret.starts_with("idg_"), "{secret}");
    assert!(
        !browser
            .client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&secret),
        "the secret is never in a URL"
    );

    // The IdP provisions with it: a person and the group they are in.
    let user = scim(
        &app,
        &secret,
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dev@acme.test", "active": true}),
    )
    .await;
    scim(
        &app,
        &secret,
        "/scim/v2/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "members": [{"value": user["id"]}]}),
    )
    .await;
    // A write the IdP gets wrong shows with what was wrong.
    let mut duplicate = client()
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&secret)
        .content_type("application/scim+json")
        .send_body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dev@acme.test"}).to_string())
        .await
        .unwrap();
    assert_eq!(duplicate.status().as_u16(), 409);
    let _ = duplicate.body().await;
    browser.click("Provisioning (SCIM)").await;
    let text = browser.wait_for_text("scim.user.created").await;
    assert!(text.contains("refused 409"), "{text}");
    assert!(text.contains("POST /Users"), "{text}");
    assert!(!text.contains(&secret), "shown once only");
    assert!(text.contains("Okta provisioning"), "{text}");
    browser.screenshot("provisioning").await;

    // Map the group, seeing first who gains what.
    browser.click("Groups and roles").await;
    browser.wait_for_text("IdP groups").await;
    browser.fill("IdP group name", "Engineering").await;
    browser.select("Role", "admin").await;
    browser.click("Preview").await;
    let text = browser.wait_for_text("would change role").await;
    assert!(
        text.contains("1 active member(s) in the group; 1 would change role"),
        "{text}"
    );
    assert!(text.contains("dev@acme.test"), "{text}");
    browser.screenshot("mapping-preview").await;
    browser.click("Save this mapping").await;
    let text = browser.wait_for_text("Saved.").await;
    assert!(text.contains("Engineering"), "{text}");
    browser.click("Engineering").await;
    let text = browser.wait_for_text("Group Engineering").await;
    assert!(text.contains("Mapped to admin"), "{text}");
    assert!(text.contains("dev@acme.test"), "{text}");

    // The provisioned member, their role and where it comes from, and their permissions.
    browser.click("People").await;
    browser
        .fill("Find people whose user name starts with", "dev")
        .await;
    browser.click("Search").await;
    let text = browser.wait_for_text("admin (group Engineering)").await;
    assert!(text.contains("dev@acme.test"), "{text}");
    let found = browser
        .client
        .find(Locator::Css("main table"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !found.contains("owner@acme.test"),
        "the search filters: {found}"
    );
    browser.screenshot("people").await;
    browser.click("dev@acme.test").await;
    let text = browser.wait_for_text("Effective permissions").await;
    assert!(text.contains("team.manage"), "{text}");
    browser.screenshot("member").await;

    // The audit log, and its export with the session.
    browser.click("Audit log").await;
    let text = browser.wait_for_text("access.mapping.set").await;
    assert!(text.contains("console.bootstrap_link.used"), "{text}");
    browser.screenshot("audit").await;
    let export = browser
        .client
        .find(Locator::LinkText("CSV"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let session = browser
        .client
        .get_named_cookie("idgate_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let (status, csv) = get_page(&app, &export, &session).await;
    assert_eq!(status, 200);
    assert!(csv.contains("access.mapping.set"), "{csv}");

    // A response the ACS refuses shows in the debugger with its reason.
    let refused = client()
        .post(app.url("/saml/acme/acs"))
        .send_form(&[("SAMLResponse", "not base64!")])
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);

    // The test sign-in, in a new tab, through the IdP.
    browser.click("IdP connection").await;
    browser.wait_for_text("Test sign-in").await;
    let console_tab = browser.client.window().await.unwrap();
    browser.click("Test sign-in").await;
    let mut tabs = browser.client.windows().await.unwrap();
    for _ in 0..100 {
        if tabs.len() == 2 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        tabs = browser.client.windows().await.unwrap();
    }
    let test_tab = tabs
        .into_iter()
        .find(|tab| *tab != console_tab)
        .expect("a new tab");
    browser.client.switch_to_window(test_tab).await.unwrap();
    browser.wait_for_text("Signing in dev@acme.test").await;
    browser.click("Continue").await;
    let text = browser.wait_for_text("Sign-in works").await;
    assert!(text.contains("dev@acme.test"), "{text}");
    assert!(text.contains("admin"), "{text}");
    browser.screenshot("test-sign-in").await;

    // The debugger shows both responses; the one that passed decoded, its signatures and
    // certificate left out.
    browser.client.switch_to_window(console_tab).await.unwrap();
    browser.click("IdP connection").await;
    let text = browser.wait_for_text("Sign-in debugger").await;
    assert!(text.contains("signed in dev@acme.test"), "{text}");
    assert!(text.contains("refused not_base64"), "{text}");
    let source = browser.client.source().await.unwrap();
    assert!(source.contains("[redacted]"), "signatures are left out");
    let certificate = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        idp.idp.certificate_der(),
    );
    assert!(
        !source.contains(&certificate[..64]),
        "the certificate is left out"
    );
    browser.screenshot_of("debugger", "debugger-section").await;

    // The attribute mapping, previewed against that sign-in.
    browser.click("Attribute mapping").await;
    let text = browser
        .wait_for_text("Read against the latest sign-in")
        .await;
    assert!(text.contains("Email email dev@acme.test"), "{text}");
    browser.select("Preset", "entra").await;
    browser.click("Preview the preset").await;
    let text = browser.wait_for_text("Preview (not saved yet)").await;
    assert!(
        text.contains("missing"),
        "Entra's claim names are not in an Okta-shaped sign-in: {text}"
    );
    browser.screenshot("attributes").await;
    browser.click("Cancel").await;
    let text = browser.wait_for_text("Attribute mapping").await;
    assert!(
        text.contains("the okta preset"),
        "nothing was saved: {text}"
    );

    // Every step shows as done.
    browser.click("Overview").await;
    let text = browser.wait_for_text("setup steps done").await;
    assert!(text.contains("5 of 5 setup steps done"), "{text}");

    // On a phone's width the menu runs along the top and the page still reads.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.open(&app.url("/console/acme/idp")).await;
    let text = browser.wait_for_text("Give your IdP these values").await;
    assert!(text.contains("Provisioning (SCIM)"), "{text}");
    browser.screenshot("phone").await;
}

async fn a_setup_link_opens_only_its_pages_until_revoked(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let (status, made) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/setup-links",
            &tenant.token,
            &json!({"expires_in": "2d"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let url = link_on(&app, made["url"].as_str().unwrap());
    let browser = Browser::start().await;

    // The IT admin follows the link from another site (their mail), as people do.
    browser
        .open(&format!("data:text/html,<a href=\"{url}\">Set up SSO</a>"))
        .await;
    browser.click("Set up SSO").await;
    let text = browser.wait_for_text("Set up single sign-on").await;
    for shown in ["IdP connection", "Provisioning (SCIM)"] {
        assert!(text.contains(shown), "{text}");
    }
    for hidden in ["People", "Audit log", "Groups and roles", "Setup links"] {
        assert!(
            !text.contains(hidden),
            "{hidden} is not a setup link's: {text}"
        );
    }
    let address = browser.client.current_url().await.unwrap();
    assert!(
        !address.as_str().contains(&url[url.len() - 20..]),
        "the secret leaves the address bar: {address}"
    );
    browser.screenshot("setup-link").await;
    browser.click("IdP connection").await;
    browser.wait_for_text("Give your IdP these values").await;
    browser.click("Provisioning (SCIM)").await;
    browser.wait_for_text("Create SCIM token").await;
    browser.fill("Token name", "Entra provisioning").await;
    browser.click("Create SCIM token").await;
    browser.wait_for_text("It is not shown again").await;

    // Nothing else of the workspace opens with it.
    browser.open(&app.url("/console/acme/members")).await;
    assert_eq!(browser.heading().await, "Sign in to acme");
    browser.open(&app.url("/setup/members")).await;
    assert_eq!(browser.heading().await, "This link no longer works");

    let (status, audit) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=console.setup_link.used",
            &tenant.token,
        )
        .await;
    assert_eq!(
        (status, audit["events"].as_array().unwrap().len()),
        (200, 1)
    );

    let id = made["id"].as_str().unwrap();
    let (status, _) = app
        .send_json(
            "DELETE",
            &format!("/api/v1/workspaces/acme/setup-links/{id}"),
            &tenant.token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 204);
    browser.open(&app.url("/setup/scim")).await;
    assert_eq!(browser.heading().await, "This link no longer works");
    browser.open(&url).await;
    assert_eq!(browser.heading().await, "This link no longer works");
}

async fn a_member_cannot_reach_the_admin_pages(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    app.tenant("acme", "workspace:read");
    let owner = sign_in_with_link(&bootstrap_link(&app, "owner@acme.test").await).await;
    // A second person, signed in by a link of their own and then made a Member.
    let link = bootstrap_link(&app, "member@acme.test").await;
    let browser = Browser::start().await;
    browser.open(&link).await;
    browser.click("Sign in as member@acme.test").await;
    browser.wait_for_text("setup steps done").await;
    let output = app
        .cli(&[
            "role",
            "set",
            "--workspace",
            "acme",
            "--member",
            "member@acme.test",
            "--roles",
            "member",
        ])
        .await;
    assert!(output.status.success(), "{output:?}");
    let member = browser
        .client
        .get_named_cookie("idgate_session")
        .await
        .unwrap()
        .value()
        .to_owned();

    browser.open(&app.url("/console/acme/")).await;
    let text = browser.wait_for_text("setup steps done").await;
    assert!(text.contains("People"), "{text}");
    for admin in [
        "IdP connection",
        "Provisioning (SCIM)",
        "Audit log",
        "Setup links",
    ] {
        assert!(
            !text.contains(admin),
            "a Member's menu has no {admin}: {text}"
        );
    }
    for page in ["idp", "scim", "groups", "audit", "setup-links"] {
        browser
            .open(&app.url(&format!("/console/acme/{page}")))
            .await;
        assert_eq!(browser.heading().await, "Not allowed", "{page}");
        let (status, _) = get_page(&app, &format!("/console/acme/{page}"), &member).await;
        assert_eq!(status, 403, "{page}");
    }
    let (status, _) = get_page(&app, "/console/acme/idp", &owner).await;
    assert_eq!(status, 200);
}

async fn forms_need_the_csrf_token_and_this_origin(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read");
    let session = sign_in_with_link(&bootstrap_link(&app, "owner@acme.test").await).await;
    let (status, page) = get_page(&app, "/console/acme/groups", &session).await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&page);
    let mapping = [("group", "Engineering"), ("role", "admin")];
    let path = "/console/acme/groups/mappings";

    let without: Vec<(&str, &str)> = mapping.to_vec();
    let (status, body) = post_form(&app, path, &session, &without, "same-origin").await;
    assert_eq!(status, 403, "{body}");
    for wrong_token in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short", ""] {
        let mut wrong = mapping.to_vec();
        wrong.push(("csrf", wrong_token));
        let (status, _) = post_form(&app, path, &session, &wrong, "same-origin").await;
        assert_eq!(status, 403, "{wrong_token:?}");
    }
    let mut right = mapping.to_vec();
    right.push(("csrf", &csrf));
    assert_eq!(
        post_form(&app, path, &session, &right, "cross-site")
            .await
            .0,
        403
    );
    let (status, mappings) = app
        .get("/api/v1/workspaces/acme/group-mappings", &tenant.token)
        .await;
    assert_eq!(
        (status, mappings["mappings"].as_array().unwrap().len()),
        (200, 0),
        "nothing changed"
    );

    assert_eq!(
        post_form(&app, path, &session, &right, "same-origin")
            .await
            .0,
        303
    );
    let (_, mappings) = app
        .get("/api/v1/workspaces/acme/group-mappings", &tenant.token)
        .await;
    assert_eq!(mappings["mappings"][0]["role"], "admin");

    // Metadata pasted into the IdP form may be large; what is refused comes back in the form.
    let (_, page) = get_page(&app, "/console/acme/idp", &session).await;
    let large = format!(
        "<md:EntityDescriptor>{}</md:EntityDescriptor>",
        "x".repeat(400 * 1024)
    );
    let csrf_idp = csrf_of(&page);
    let fields = [
        ("csrf", csrf_idp.as_str()),
        ("via", "xml"),
        ("metadata_xml", large.as_str()),
    ];
    let (status, page) =
        post_form(&app, "/console/acme/idp", &session, &fields, "same-origin").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("Tell idgate about your IdP") && page.contains("xxxxxxxx"),
        "kept"
    );

    // The token is bound to the session: another session's page token does not do.
    let other = sign_in_with_link(&bootstrap_link(&app, "second@acme.test").await).await;
    let remove = [
        ("group", "Engineering"),
        ("role", ""),
        ("csrf", csrf.as_str()),
    ];
    assert_eq!(
        post_form(&app, path, &other, &remove, "same-origin")
            .await
            .0,
        403
    );

    // Pages may not be framed and run only the service's own script.
    let response = client()
        .get(app.url("/console/acme/"))
        .insert_header(session_cookie(&session))
        .send()
        .await
        .unwrap();
    let policy = response
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert_eq!(response.headers().get("x-frame-options").unwrap(), "DENY");
}

async fn a_bootstrap_link_works_once_and_expires(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "audit:read,workspace:read");
    let link = bootstrap_link(&app, "Owner@Acme.test").await;
    // Only the secret's hash is kept.
    let secret = link.rsplit('/').next().unwrap().to_owned();
    let stored: Vec<Vec<u8>> = {
        use diesel::prelude::*;
        use idgate::db::schema::console_links;
        console_links::table
            .select(console_links::secret_hash)
            .load(&mut *app.database.connect())
            .unwrap()
    };
    assert_eq!(stored, vec![idgate::secrets::hash(&secret).to_vec()]);
    let session = sign_in_with_link(&link).await;
    let (status, me) = app.get("/api/v1/session", &session).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "owner@acme.test");
    assert_eq!(me["workspaces"][0]["roles"], json!(["owner"]), "{me}");

    // Spent: the same link is refused, and so is a link from another site.
    let again = client()
        .post(&link)
        .insert_header(("Sec-Fetch-Site", "same-origin"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let fresh = bootstrap_link(&app, "owner@acme.test").await;
    let forged = client()
        .post(&fresh)
        .insert_header(("Sec-Fetch-Site", "cross-site"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);

    // Past 15 minutes it no longer works.
    app.clock.advance(chrono::TimeDelta::minutes(16));
    let late = client()
        .post(&fresh)
        .insert_header(("Sec-Fetch-Site", "same-origin"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status().as_u16(), 404);

    let (_, audit) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=console.bootstrap_link.used",
            &tenant.token,
        )
        .await;
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");

    // Signing out ends the session itself, not only the cookie.
    let (_, page) = get_page(&app, "/console/acme/", &session).await;
    let csrf = csrf_of(&page);
    let fields = [("csrf", csrf.as_str())];
    let (status, _) = post_form(
        &app,
        "/console/-/sign-out",
        &session,
        &fields,
        "same-origin",
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(app.get("/api/v1/session", &session).await.0, 401);
    assert_eq!(get_page(&app, "/console/acme/", &session).await.0, 401);
}

/// Only an Owner makes setup links and SCIM tokens, or maps a group to Owner: an Admin is refused
/// as not allowed (403).
async fn only_an_owner_makes_setup_links_and_scim_tokens(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    app.tenant("acme", "workspace:read");
    let owner = sign_in_with_link(&bootstrap_link(&app, "owner@acme.test").await).await;
    let admin = sign_in_with_link(&bootstrap_link(&app, "admin@acme.test").await).await;
    let output = app
        .cli(&[
            "role",
            "set",
            "--workspace",
            "acme",
            "--member",
            "admin@acme.test",
            "--roles",
            "admin",
        ])
        .await;
    assert!(output.status.success(), "{output:?}");

    let (status, body) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/setup-links",
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 403, "an Admin's session: {body}");
    let (status, body) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/setup-links",
            &owner,
            &json!({}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/setup-links",
            &owner,
            &json!({"expires_in": "90d"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Refused as forbidden (403), not as a mistake in the form (400).
    let (_, page) = get_page(&app, "/console/acme/groups", &admin).await;
    let fields = [
        ("group", "Everyone"),
        ("role", "owner"),
        ("csrf", csrf_of(&page).leak()),
    ];
    let (status, page) = post_form(
        &app,
        "/console/acme/groups/mappings",
        &admin,
        &fields,
        "same-origin",
    )
    .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Not allowed"), "{page}");

    let (_, page) = get_page(&app, "/console/acme/scim", &admin).await;
    assert!(page.contains("Only an Owner creates SCIM tokens"));
    let fields = [("name", "mine"), ("csrf", csrf_of(&page).leak())];
    let (status, _) = post_form(
        &app,
        "/console/acme/scim/tokens",
        &admin,
        &fields,
        "same-origin",
    )
    .await;
    assert_eq!(status, 403);
    let (_, page) = get_page(&app, "/console/acme/scim", &owner).await;
    let fields = [("name", "okta"), ("csrf", csrf_of(&page).leak())];
    let (status, page) = post_form(
        &app,
        "/console/acme/scim/tokens",
        &owner,
        &fields,
        "same-origin",
    )
    .await;
    assert_eq!(status, 201);
    assert!(page.contains("idg_"), "the secret, shown once");
}

async fn a_setup_links_forms_need_its_token_and_this_origin(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,tokens:write");
    let setup_cookie = open_setup_link(&app).await;
    let token = csrf_of(&setup_page(&app, &setup_cookie, "/setup/scim").await);
    let post = |site: &'static str, csrf: String| {
        client()
            .post(app.url("/setup/scim/tokens"))
            .insert_header(("Cookie", setup_cookie.clone()))
            .insert_header(("Sec-Fetch-Site", site))
            .send_form(&[("name", "Entra"), ("csrf", csrf.as_str())].to_vec())
    };
    assert_eq!(
        post("cross-site", token.clone())
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        post("same-origin", "x".repeat(43))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let scim_tokens = || async {
        let (_, tokens) = app
            .get("/api/v1/workspaces/acme/tokens", &tenant.token)
            .await;
        tokens["tokens"]
            .as_array()
            .expect("the workspace's tokens")
            .iter()
            .filter(|token| token["scopes"] == json!(["scim"]))
            .count()
    };
    assert_eq!(scim_tokens().await, 0, "nothing was made");
    assert_eq!(
        post("same-origin", token).await.unwrap().status().as_u16(),
        201
    );
    assert_eq!(scim_tokens().await, 1);
    // The cookie opens no page of the console outside /setup/.
    let members = client()
        .get(app.url("/console/acme/members"))
        .insert_header((
            "Cookie",
            setup_cookie.replace("idgate_setup", "idgate_session"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(members.status().as_u16(), 401);
}

/// Makes a setup link with the CLI and opens it as its holder would; returns the cookie it leaves.
async fn open_setup_link(app: &TestApp) -> String {
    let output = app
        .cli(&["setup-link", "create", "--workspace", "acme"])
        .await;
    assert!(output.status.success(), "{output:?}");
    let opened = client()
        .get(link_on(app, &stdout(&output)))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 303);
    opened
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A `/setup/` page as the holder of `setup_cookie` sees it.
async fn setup_page(app: &TestApp, setup_cookie: &str, path: &str) -> String {
    let mut page = client()
        .get(app.url(path))
        .insert_header(("Cookie", setup_cookie.to_owned()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    String::from_utf8(page.body().await.unwrap().to_vec()).unwrap()
}

/// A setup link's holder manages the SCIM tokens made through setup links, and only those: the
/// operator's tokens, SCIM ones included, are neither listed nor revoked through it.
async fn a_setup_link_revokes_only_tokens_made_through_setup_links(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,tokens:write");
    let operators = [
        app.token_for(&tenant.workspace, "scim,workspace:write,tokens:write"),
        app.token_for(&tenant.workspace, "scim"),
    ];
    let setup_cookie = open_setup_link(&app).await;
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        client()
            .post(app.url(&path))
            .insert_header(("Cookie", setup_cookie.clone()))
            .insert_header(("Sec-Fetch-Site", "same-origin"))
            .send_form(&fields)
    };
    let page = setup_page(&app, &setup_cookie, "/setup/scim").await;
    let csrf = csrf_of(&page);
    let (app, tenant) = (&app, &tenant);
    let listed = || async move {
        let (_, listed) = app
            .get("/api/v1/workspaces/acme/tokens", &tenant.token)
            .await;
        listed["tokens"].as_array().unwrap().clone()
    };
    let status = |token_id: String| async move {
        let listed = listed().await;
        let token = listed.iter().find(|token| token["id"] == token_id.as_str());
        token.expect("listed")["status"].clone()
    };
    for operators in &operators {
        assert!(!page.contains(&operators.token.id), "listed: {page}");
        let path = format!("/setup/scim/tokens/{}/revoke", operators.token.id);
        let refused = post(path, vec![("csrf", csrf.clone())]).await.unwrap();
        assert_eq!(refused.status().as_u16(), 404);
        assert_eq!(status(operators.token.id.clone()).await, "active");
    }

    let made = post(
        "/setup/scim/tokens".to_owned(),
        vec![("name", "Entra".to_owned()), ("csrf", csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let entra = listed()
        .await
        .iter()
        .find(|token| token["name"] == "Entra")
        .expect("the token made through the link")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        setup_page(app, &setup_cookie, "/setup/scim")
            .await
            .contains(&entra)
    );
    let path = format!("/setup/scim/tokens/{entra}/revoke");
    let revoked = post(path, vec![("csrf", csrf)]).await.unwrap();
    assert_eq!(revoked.status().as_u16(), 303);
    assert_eq!(status(entra).await, "revoked");
}

async fn grants_are_given_and_revoked_in_the_console(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,sources:write");
    let (status, source) = app
        .send_json(
            "POST",
            "/api/v1/workspaces/acme/resources",
            &tenant.token,
            &json!({"kind": "source", "name": "Website", "labels": ["data:pii"]}),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let link = bootstrap_link(&app, "owner@acme.test").await;
    bootstrap_link(&app, "analyst@acme.test").await;
    let browser = Browser::start().await;
    browser.open(&link).await;
    browser.click("Sign in as owner@acme.test").await;
    browser.wait_for_text("setup steps done").await;

    browser.click("Resources and grants").await;
    let text = browser.wait_for_text("Website").await;
    assert!(text.contains("data:pii"), "{text}");
    browser
        .fill("Member email or group name", "owner@acme.test")
        .await;
    browser.select("On", "label:data:pii").await;
    browser.select("Level", "read_only").await;
    browser
        .fill("Expires in (such as 7d; empty: never)", "7d")
        .await;
    browser.fill("Justification", "quarterly audit").await;
    browser.click("Grant").await;
    let text = browser.wait_for_text("Saved.").await;
    assert!(text.contains("label data:pii"), "{text}");
    assert!(text.contains("quarterly audit"), "{text}");
    browser.screenshot("resources").await;
    let (_, listed) = app
        .get("/api/v1/workspaces/acme/grants", &tenant.token)
        .await;
    assert_eq!(listed["grants"][0]["level"], "read_only", "{listed}");
    assert!(listed["grants"][0]["expires_at"].is_string(), "{listed}");

    // A refused grant says why and changes nothing.
    browser
        .fill("Member email or group name", "nobody@acme.test")
        .await;
    browser.click("Grant").await;
    let text = browser.wait_for_text("That did not work").await;
    assert!(text.contains("nobody@acme.test"), "{text}");
    browser.client.back().await.unwrap();

    browser.open(&app.url("/console/acme/resources")).await;
    browser.click("Revoke").await;
    let text = browser.wait_for_text("Saved.").await;
    assert!(text.contains("No grants"), "{text}");
    let (_, listed) = app
        .get("/api/v1/workspaces/acme/grants", &tenant.token)
        .await;
    assert_eq!(listed["grants"], json!([]), "{listed}");
}
