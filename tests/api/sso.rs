//! SAML logins through HTTP: the test IdP answers idgate's AuthnRequest, the browser posts to the
//! ACS, and the session that results is checked, shortened and ended as the contract says.

use std::io::Read;

use awc::http::header::{COOKIE, LOCATION, SET_COOKIE};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use serde_json::{Value, json};

use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

use idgate::config::Settings;
use idgate::db::schema::saml_sign_in_traces;
use idgate::forwarded::TrustedProxies;
use idgate::saml::traces;

use crate::helpers::{
    self, Tenant, TestApp, TestDatabase, read, seen_by_replica, transaction_counter,
};
use crate::on_both_databases;
use crate::saml_idp::{Encryption, Login, Signed, TestIdp};

on_both_databases!(
    sp_initiated_login_gives_a_session_that_verifies_and_logs_out,
    idp_initiated_login_is_refused_on_a_replay_by_any_replica,
    refusals_are_audited_with_their_reason_and_set_no_cookie,
    an_email_that_is_not_an_address_is_refused_with_its_reason,
    garbage_posted_to_the_acs_never_pushes_a_sign_in_out_of_the_debugger,
    an_encrypted_assertion_logs_in,
    a_hipaa_membership_shortens_every_session_of_that_person,
    deprovisioning_ends_sessions_and_jit_off_admits_members_only,
    groups_asserted_at_login_map_to_roles,
    single_logout_works_both_ways_and_refuses_forgeries,
    a_session_acts_on_the_admin_api_as_its_roles_and_levels_allow,
    an_entra_login_finds_the_email_through_the_entra_preset,
    session_keys_rotate_and_stay_published_while_their_tokens_live,
    a_session_ended_through_one_replica_is_refused_by_another,
    metrics_count_by_route_and_reason_and_name_no_one,
    a_session_never_outlives_the_idps_session,
    a_workspaces_idp_speaks_for_no_one_in_another_workspace,
    only_an_owner_makes_or_lowers_owners_and_minted_tokens_are_their_minters,
    a_resource_hidden_from_someone_is_named_to_them_nowhere,
    labels_grant_nothing_to_whoever_applies_them,
    another_site_cannot_act_with_the_session_cookie,
    a_login_never_takes_the_last_owners_owner_group,
    a_flood_of_forged_responses_is_slowed_and_audits_a_bounded_number,
    the_sp_metadata_says_whether_assertions_must_be_signed,
    an_assertion_xmlsec1_encrypted_as_real_idps_do_signs_in,
    an_assertion_pysaml2_encrypted_signs_in,
);

const IDP_ENTITY: &str = "http://www.okta.com/exk1test";

pub(crate) struct Sso {
    pub(crate) app: TestApp,
    idp: TestIdp,
    pub(crate) admin: Tenant,
    browser: awc::Client,
}

/// A workspace `slug` whose IdP is the test IdP, and an admin token for it.
async fn connect(app: &TestApp, slug: &str, idp: &TestIdp) -> Tenant {
    let admin = app.tenant(
        slug,
        "workspace:read,workspace:write,audit:read,scim,sources:read,sources:write",
    );
    let body = json!({
        "entity_id": idp.entity_id,
        "sso_url": "https://idp.example/sso",
        "certificates": [idp.certificate_pem()],
    });
    let path = format!("/api/v1/workspaces/{slug}/idp");
    let (status, shown) = app.send_json("PUT", &path, &admin.token, &body).await;
    assert_eq!(status, 200, "{shown}");
    admin
}

impl Sso {
    pub(crate) async fn new(database: TestDatabase) -> Sso {
        Sso::new_with(database, |_| {}).await
    }

    /// [`Sso::new`] with the server's settings changed as `change` says.
    async fn new_with(database: TestDatabase, change: impl FnOnce(&mut Settings)) -> Sso {
        let app = TestApp::spawn_with(database, change).await;
        let idp = TestIdp::new(IDP_ENTITY);
        let admin = connect(&app, "acme", &idp).await;
        Sso {
            app,
            idp,
            admin,
            browser: awc::Client::builder().disable_redirects().finish(),
        }
    }

    /// A login issued at the server's time, which tests move forward.
    fn login(&self, slug: &str, email: &str) -> Login {
        let mut login = Login::new(&self.app.url(""), slug, email);
        login.issued = self.app.clock.now().and_utc();
        login
    }

    /// Changes acme's IdP connection.
    async fn set_idp(&self, body: &Value) {
        let path = "/api/v1/workspaces/acme/idp";
        let (status, shown) = self
            .app
            .send_json("PUT", path, &self.admin.token, body)
            .await;
        assert_eq!(status, 200, "{shown}");
    }

    /// Gives a member of acme these direct roles, with the operator's token.
    async fn set_roles(&self, email: &str, roles: &[&str]) {
        let path = format!("/api/v1/workspaces/acme/members/{email}/roles");
        let body = json!({ "roles": roles });
        let (status, shown) = self
            .app
            .send_json("PUT", &path, &self.admin.token, &body)
            .await;
        assert_eq!(status, 200, "{shown}");
    }

    /// Maps an IdP group to a role in acme, with the operator's token.
    async fn map_group(&self, group: &str, role: &str) {
        let path = format!("/api/v1/workspaces/acme/group-mappings/{group}");
        let body = json!({ "role": role });
        let (status, shown) = self
            .app
            .send_json("PUT", &path, &self.admin.token, &body)
            .await;
        assert_eq!(status, 200, "{shown}");
    }

    /// Starts an SP-initiated login as a browser would; returns the request's ID and the cookie
    /// that binds it to this browser.
    async fn start(&self, slug: &str, relay: &str) -> (String, String) {
        let url = self
            .app
            .url(&format!("/saml/{slug}/login?RelayState={relay}"));
        let response = self.browser.get(url).send().await.unwrap();
        assert_eq!(response.status(), 303);
        let location = url::Url::parse(&header(&response, LOCATION)).unwrap();
        let xml = redirected_message(&location, "SAMLRequest");
        let id = xml
            .split(" ID=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let cookie = cookie_of(&response, "idgate_saml_request").expect("the request cookie");
        (id.to_owned(), cookie)
    }

    /// Posts a response to the ACS; returns the status, the Location and the session cookie.
    async fn post(
        &self,
        base: &str,
        slug: &str,
        encoded: &str,
        relay: Option<&str>,
        request_cookie: Option<&str>,
    ) -> (u16, Option<String>, Option<String>, String) {
        let mut form = vec![("SAMLResponse", encoded)];
        if let Some(relay) = relay {
            form.push(("RelayState", relay));
        }
        let mut request = self.browser.post(format!("{base}/saml/{slug}/acs"));
        if let Some(cookie) = request_cookie {
            request = request.insert_header((COOKIE, format!("idgate_saml_request={cookie}")));
        }
        let mut response = request.send_form(&form).await.unwrap();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let session = cookie_of(&response, "idgate_session");
        let body = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        (response.status().as_u16(), location, session, body)
    }

    async fn post_here(
        &self,
        slug: &str,
        encoded: &str,
    ) -> (u16, Option<String>, Option<String>, String) {
        self.post(&self.app.url(""), slug, encoded, None, None)
            .await
    }

    /// Logs `email` in by an IdP-initiated response; returns the session token.
    pub(crate) async fn log_in(&self, slug: &str, email: &str) -> String {
        let encoded = self.idp.response(&self.login(slug, email), Signed::Both);
        let (status, _, session, body) = self.post_here(slug, &encoded).await;
        assert_eq!(status, 303, "{body}");
        session.expect("a session cookie")
    }

    /// A request carrying the session cookie.
    pub(crate) fn with_cookie(&self, method: &str, path: &str, token: &str) -> awc::ClientRequest {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        self.app
            .client
            .request(method, self.app.url(path))
            .insert_header((COOKIE, format!("idgate_session={token}")))
    }

    async fn with_session(&self, path: &str, token: &str) -> (u16, Value) {
        read(self.with_cookie("GET", path, token).send().await.unwrap()).await
    }

    async fn session(&self, token: &str) -> (u16, Value) {
        self.with_session("/api/v1/session", token).await
    }

    /// How long a session has left by the service's clock, as `GET /api/v1/session` reports it.
    async fn time_left(&self, token: &str) -> TimeDelta {
        let (status, me) = self.session(token).await;
        assert_eq!(status, 200, "{me}");
        let expires =
            chrono::DateTime::parse_from_rfc3339(me["expires_at"].as_str().unwrap()).unwrap();
        expires.to_utc() - self.app.clock.now().and_utc()
    }

    /// The reasons of refused logins in the audit log, newest first.
    async fn refusals(&self, slug: &str, admin: &Tenant) -> Vec<String> {
        let path = format!("/api/v1/workspaces/{slug}/audit?action=saml.login.refused&limit=100");
        let (status, log) = self.app.get(&path, &admin.token).await;
        assert_eq!(status, 200, "{log}");
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["details"]["reason"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The XML a Redirect-binding URL carries in `parameter`, inflated.
fn redirected_message(url: &url::Url, parameter: &str) -> String {
    let (_, message) = url.query_pairs().find(|(k, _)| k == parameter).unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&STANDARD.decode(message.as_bytes()).unwrap()[..])
        .read_to_string(&mut xml)
        .unwrap();
    xml
}

fn cookie_of<S>(response: &awc::ClientResponse<S>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c[name.len() + 1..].split(';').next().unwrap().to_owned())
        .filter(|value| !value.is_empty())
}

fn header<S>(
    response: &awc::ClientResponse<S>,
    name: impl awc::http::header::AsHeaderName,
) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn set_cookie_header<S>(response: &awc::ClientResponse<S>, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap()
}

async fn sp_initiated_login_gives_a_session_that_verifies_and_logs_out(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let (request_id, request_cookie) = sso.start("acme", "/dashboard%3Ftab%3D1").await;
    let mut login = sso
        .login("acme", "Ada@Example.com")
        .attribute("firstName", &["Ada"])
        .attribute("lastName", &["Lovelace"]);
    login.in_response_to = Some(request_id);
    let encoded = sso.idp.response(&login, Signed::Both);

    // Without the browser's request cookie the response is not this browser's.
    let (status, _, session, _) = sso
        .post(&sso.app.url(""), "acme", &encoded, None, None)
        .await;
    assert_eq!((status, session), (400, None));

    // The path kept with the request wins over whatever RelayState the IdP returns.
    let response = sso
        .browser
        .post(sso.app.url("/saml/acme/acs"))
        .insert_header((COOKIE, format!("idgate_saml_request={request_cookie}")))
        .send_form(&[
            ("SAMLResponse", encoded.as_str()),
            ("RelayState", "/elsewhere"),
        ])
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(header(&response, LOCATION), "/dashboard?tab=1");
    let session_header = set_cookie_header(&response, "idgate_session");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(
            session_header.contains(attribute),
            "{attribute} in {session_header}"
        );
    }
    let token = cookie_of(&response, "idgate_session").unwrap();

    // The same response again: its request is used up.
    let (status, _, session, _) = sso
        .post(
            &sso.app.url(""),
            "acme",
            &encoded,
            None,
            Some(&request_cookie),
        )
        .await;
    assert_eq!((status, session), (400, None));
    assert_eq!(
        sso.refusals("acme", &sso.admin).await,
        ["request_reused", "browser_mismatch"]
    );

    let (status, me) = sso.session(&token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["workspace"], "acme");
    assert_eq!(me["workspaces"][0]["slug"], "acme");
    assert_eq!(me["workspaces"][0]["roles"], json!([]));
    let days = sso.time_left(&token).await.num_hours();
    assert!((167..=168).contains(&days), "a 7-day session: {days} h");

    // Just-in-time membership with the IdP's names.
    let member_id = me["member_id"].as_str().unwrap().to_owned();
    let (status, user) = sso
        .app
        .get(&format!("/scim/v2/Users/{member_id}"), &sso.admin.token)
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["userName"], "ada@example.com");
    assert_eq!(user["name"]["givenName"], "Ada");

    // A bearer session token works too; the forward-auth endpoint names the person.
    let (status, _) = read(
        sso.app
            .client
            .get(sso.app.url("/api/v1/session"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let verified = sso
        .with_cookie("GET", "/auth/verify", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(header(&verified, "x-idgate-email"), "ada@example.com");
    assert_eq!(header(&verified, "x-idgate-workspace"), "acme");
    assert_eq!(header(&verified, "x-idgate-user"), member_id.as_str());

    // The token verifies offline with the published key its header names.
    let token_header = jsonwebtoken::decode_header(&token).unwrap();
    let (_, jwks) = read(
        sso.app
            .client
            .get(sso.app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == token_header.kid.clone().unwrap().as_str())
        .expect("the token's key is published");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["email"], "ada@example.com");
    // Tampered, it is not a session.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(sso.session(&forged).await.0, 401);

    let logout = sso
        .with_cookie("POST", "/api/v1/session/logout", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    assert!(set_cookie_header(&logout, "idgate_session").contains("Max-Age=0"));
    assert_eq!(sso.session(&token).await.0, 401);
    assert_eq!(sso.with_session("/auth/verify", &token).await.0, 401);
    assert_eq!(sso.with_session("/auth/verify", "").await.0, 401);
}

async fn idp_initiated_login_is_refused_on_a_replay_by_any_replica(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let replica = sso.app.spawn_replica().await;
    let here = sso.app.url("");
    let encoded = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    let (status, location, session, _) = sso
        .post(&here, "acme", &encoded, Some("/reports"), None)
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/reports")));
    assert!(session.is_some());
    // The replica shares the replay cache through the database.
    let (status, _, session, page) = sso.post(&replica, "acme", &encoded, None, None).await;
    assert_eq!((status, session), (400, None));
    assert!(page.contains("already used"), "{page}");
    assert_eq!(sso.refusals("acme", &sso.admin).await, ["replay"]);

    // RelayState leads only to a path of this site.
    let encoded = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    let (_, location, _, _) = sso
        .post(&here, "acme", &encoded, Some("https://evil.example/"), None)
        .await;
    assert_eq!(location.as_deref(), Some("/"));

    // With IdP-initiated login off, only answers to our requests count.
    let body = json!({"options": {"allow_idp_initiated": false}});
    sso.set_idp(&body).await;
    let encoded = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &encoded).await.0, 400);
    assert_eq!(sso.refusals("acme", &sso.admin).await[0], "unsolicited");
}

async fn refusals_are_audited_with_their_reason_and_set_no_cookie(database: TestDatabase) {
    let sso = Sso::new(database).await;
    // One IdP serving two workspaces is the hardest case for keeping them apart.
    let beta = connect(&sso.app, "beta", &sso.idp).await;

    let unsigned = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Neither);
    let (status, _, session, page) = sso.post_here("acme", &unsigned).await;
    assert_eq!((status, session), (400, None));
    assert_eq!(
        page,
        "The sign-in response from your identity provider could not be accepted."
    );

    // A response meant for beta, posted to acme's ACS.
    let for_beta = sso
        .idp
        .response(&sso.login("beta", "eve@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &for_beta).await.0, 400);
    // An IdP acme does not trust, naming itself.
    let stranger = TestIdp::new("https://sts.windows.net/stranger/");
    let mut from_stranger = sso.login("acme", "eve@example.com");
    from_stranger.issuer = Some(stranger.entity_id.clone());
    let from_stranger = stranger.response(&from_stranger, Signed::Both);
    assert_eq!(sso.post_here("acme", &from_stranger).await.0, 400);
    // An AuthnRequest of beta's, answered at acme.
    let (beta_request, beta_cookie) = sso.start("beta", "/").await;
    let mut login = sso.login("acme", "ada@example.com");
    login.in_response_to = Some(beta_request);
    let crossed = sso.idp.response(&login, Signed::Both);
    let (status, ..) = sso
        .post(&sso.app.url(""), "acme", &crossed, None, Some(&beta_cookie))
        .await;
    assert_eq!(status, 400);

    // Metadata past its validUntil (and not refreshed) refuses logins.
    sso.app
        .database
        .execute("UPDATE idp_connections SET metadata_valid_until = '2020-01-01 00:00:00'")
        .unwrap();
    let stale = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &stale).await.0, 400);
    sso.app
        .database
        .execute("UPDATE idp_connections SET metadata_valid_until = NULL")
        .unwrap();
    // A connection whose every signing certificate has expired refuses even a good signature.
    let expired = crate::saml_idp::self_signed_between(
        sso.idp.key(),
        "expired",
        &openssl::asn1::Asn1Time::from_unix(1_546_300_800).unwrap(),
        &openssl::asn1::Asn1Time::from_unix(1_577_836_800).unwrap(),
    );
    sso.set_idp(&json!({
        "entity_id": sso.idp.entity_id,
        "sso_url": "https://idp.example/sso",
        "certificates": [String::from_utf8(expired.to_pem().unwrap()).unwrap()],
    }))
    .await;
    let signed_by_that_key = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &signed_by_that_key).await.0, 400);

    let missing = sso
        .browser
        .post(sso.app.url("/saml/acme/acs"))
        .send_form(&[("RelayState", "/")])
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let unknown = sso.post_here("nowhere", &unsigned).await;
    assert_eq!(unknown.0, 404);

    assert_eq!(
        sso.refusals("acme", &sso.admin).await,
        [
            "no_usable_certificate",
            "metadata_expired",
            "in_response_to",
            "bad_signature",
            "destination",
            "unsigned"
        ]
    );
    assert!(sso.refusals("beta", &beta).await.is_empty());
}

/// An IdP's assertion is signed, but what it says is the IdP's admin's to type: an email that is
/// not an address (markup, a space, no domain) signs no one in, and is audited as such.
async fn an_email_that_is_not_an_address_is_refused_with_its_reason(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let not_addresses = [
        "<img src=x onerror=alert(1)>@example.com",
        "ada lovelace@example.com",
        "ada@example",
        "ada@@example.com",
        "ada.@example.com",
        "\"ada\"@example.com",
        "ada@[192.0.2.1]",
        "ada@-example.com",
    ];
    for email in not_addresses {
        let response = sso.idp.response(&sso.login("acme", email), Signed::Both);
        let (status, _, session, _) = sso.post_here("acme", &response).await;
        assert_eq!((status, session.is_some()), (400, false), "{email}");
    }
    assert_eq!(
        sso.refusals("acme", &sso.admin).await,
        vec!["invalid_email"; not_addresses.len()]
    );
    for email in ["o'neil+idgate@mail.example.co.uk", "zoë@exämple.de"] {
        sso.log_in("acme", email).await;
    }
}

/// Anyone may post to the ACS. A flood of unsigned garbage, from many addresses or one, leaves a
/// bounded number of traces and never pushes a sign-in, or a refusal of what the IdP signed, out
/// of the sign-in debugger; one sender leaves only its newest few.
async fn garbage_posted_to_the_acs_never_pushes_a_sign_in_out_of_the_debugger(
    database: TestDatabase,
) {
    let sso = Sso::new_with(database, |settings| {
        settings.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").unwrap();
    })
    .await;
    sso.log_in("acme", "ada@example.com").await;
    let mut signed_refusal = sso.login("acme", "eve@example.com");
    signed_refusal.audience = "https://elsewhere.example/".to_owned();
    let signed_refusal = sso.idp.response(&signed_refusal, Signed::Both);
    assert_eq!(sso.post_here("acme", &signed_refusal).await.0, 400);

    let garbage = sso
        .idp
        .response(&sso.login("acme", "mallory@example.com"), Signed::Neither);
    let post_from = |client: String| {
        sso.browser
            .post(sso.app.url("/saml/acme/acs"))
            .insert_header(("X-Forwarded-For", client))
            .send_form(&[("SAMLResponse", garbage.as_str())])
    };
    for sender in 0..55 {
        let refused = post_from(format!("203.0.113.{sender}")).await.unwrap();
        assert_eq!(refused.status(), 400);
    }
    for _ in 0..10 {
        let refused = post_from("198.51.100.7".to_owned()).await.unwrap();
        assert_eq!(refused.status(), 400);
    }

    let mut conn = sso.app.database.connect();
    let now = sso.app.clock.now();
    let traces = traces::recent(&mut conn, &sso.admin.workspace.id, now, 1000).unwrap();
    let count = |outcome: &str| traces.iter().filter(|t| t.outcome == outcome).count();
    assert_eq!(count(traces::SIGNED_IN), 1, "the sign-in is kept");
    assert_eq!(
        count("audience"),
        1,
        "so is the refusal of what the IdP signed"
    );
    assert_eq!(count("unsigned"), traces::REFUSALS_KEPT as usize);
    let from_one_sender: i64 = saml_sign_in_traces::table
        .filter(saml_sign_in_traces::client.eq("198.51.100.7"))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(from_one_sender, traces::REFUSALS_KEPT_PER_CLIENT);
}

async fn an_encrypted_assertion_logs_in(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let metadata = sso
        .app
        .client
        .get(sso.app.url("/saml/acme/metadata"))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let metadata = String::from_utf8(metadata.to_vec()).unwrap();
    let encryption = metadata.split("use=\"encryption\"").nth(1).unwrap();
    let certificate = encryption
        .split("<ds:X509Certificate>")
        .nth(1)
        .unwrap()
        .split("</ds:X509Certificate>")
        .next()
        .unwrap();
    let certificate =
        openssl::x509::X509::from_der(&STANDARD.decode(certificate).unwrap()).unwrap();
    let encoded = sso.idp.encrypted_response(
        &sso.login("acme", "ada@example.com"),
        Signed::Assertion,
        &certificate,
        Encryption::Aes256Gcm,
    );
    let (status, _, session, page) = sso.post_here("acme", &encoded).await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(sso.session(&session.unwrap()).await.0, 200);

    // The key beside the data, named by RetrievalMethod, after another recipient's key.
    let stranger =
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let stranger = crate::saml_idp::self_signed(&stranger, "another SP", 30);
    let decoy = crate::saml_idp::encrypt("<x/>", &stranger, Encryption::Aes128Cbc);
    let decoy = element(&decoy, "xenc:EncryptedKey");
    let encoded = sso.idp.encrypted_response(
        &sso.login("acme", "ada@example.com"),
        Signed::Assertion,
        &certificate,
        Encryption::Aes128Cbc,
    );
    let xml = String::from_utf8(STANDARD.decode(&encoded).unwrap()).unwrap();
    let ours = element(&xml, "xenc:EncryptedKey");
    let declared = |key: &str, id: &str| {
        key.replacen(
            "<xenc:EncryptedKey>",
            &format!("<xenc:EncryptedKey Id=\"{id}\" xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"),
            1,
        )
    };
    let beside = xml
        .replace(
            &ours,
            "<ds:RetrievalMethod URI=\"#k\" Type=\"http://www.w3.org/2001/04/xmlenc#EncryptedKey\"/>",
        )
        .replace(
            "</xenc:EncryptedData>",
            &format!(
                "</xenc:EncryptedData>{}{}",
                declared(&decoy, "other"),
                declared(&ours, "k")
            ),
        );
    let (status, _, _, page) = sso.post_here("acme", &STANDARD.encode(beside)).await;
    assert_eq!(status, 303, "{page}");
}

/// The first `<name ...>...</name>` element of `xml`, as written.
fn element(xml: &str, name: &str) -> String {
    let start = xml.find(&format!("<{name}")).unwrap();
    let close = format!("</{name}>");
    let end = start + xml[start..].find(&close).unwrap() + close.len();
    xml[start..end].to_owned()
}

async fn a_hipaa_membership_shortens_every_session_of_that_person(database: TestDatabase) {
    let sso = Sso::new(database).await;
    connect(&sso.app, "beta", &sso.idp).await;
    let hipaa = |on: bool| {
        let sso = &sso;
        async move {
            let body = json!({ "hipaa": on });
            let (status, _) = sso
                .app
                .send_json("PATCH", "/api/v1/workspaces/acme", &sso.admin.token, &body)
                .await;
            assert_eq!(status, 200);
        }
    };
    // Ada is in both workspaces; the alias is a separate person, in beta only.
    let acme_session = sso.log_in("acme", "ada@example.com").await;
    let beta_session = sso.log_in("beta", "ada@example.com").await;
    let alias_session = sso.log_in("beta", "ada+beta@example.com").await;

    sso.app.clock.advance(TimeDelta::days(6));
    for token in [&acme_session, &beta_session, &alias_session] {
        assert_eq!(
            sso.session(token).await.0,
            200,
            "a 7-day session lives 6 days"
        );
    }
    // acme becomes HIPAA-eligible: Ada's sessions, 6 days old, end everywhere; the alias's stay.
    hipaa(true).await;
    assert_eq!(sso.session(&acme_session).await.0, 401);
    assert_eq!(sso.session(&beta_session).await.0, 401);
    assert_eq!(sso.session(&alias_session).await.0, 200);

    // A new login lasts 15 minutes, in beta too.
    let fresh = sso.log_in("beta", "ada@example.com").await;
    assert_eq!(sso.time_left(&fresh).await.num_minutes(), 14);
    sso.app.clock.advance(TimeDelta::minutes(14));
    assert_eq!(sso.session(&fresh).await.0, 200);
    sso.app.clock.advance(TimeDelta::minutes(2));
    assert_eq!(sso.session(&fresh).await.0, 401);

    // Membership counts by SCIM email as well as by userName: Grace is "grace" in acme.
    let grace = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace",
        "emails": [{"value": "Grace@example.com", "type": "work"}],
    });
    let (status, body) = sso
        .app
        .send_json("POST", "/scim/v2/Users", &sso.admin.token, &grace)
        .await;
    assert_eq!(status, 201, "{body}");
    let grace_session = sso.log_in("beta", "grace@example.com").await;
    assert_eq!(sso.time_left(&grace_session).await.num_minutes(), 14);

    // Off again: a fresh session is 7 days.
    hipaa(false).await;
    let relaxed = sso.log_in("beta", "ada@example.com").await;
    sso.app.clock.advance(TimeDelta::hours(1));
    assert_eq!(sso.session(&relaxed).await.0, 200);
}

/// The `id` of the SCIM user with this userName.
async fn scim_id(sso: &Sso, user_name: &str) -> String {
    let (_, found) = sso
        .app
        .get(
            &format!("/scim/v2/Users?filter=userName%20eq%20%22{user_name}%22"),
            &sso.admin.token,
        )
        .await;
    found["Resources"][0]["id"].as_str().unwrap().to_owned()
}

async fn deprovisioning_ends_sessions_and_jit_off_admits_members_only(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let session = sso.log_in("acme", "ada@example.com").await;
    let ada = scim_id(&sso, "ada@example.com").await;
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let path = format!("/scim/v2/Users/{ada}");
    assert_eq!(
        sso.app
            .send_json("PATCH", &path, &sso.admin.token, &deactivate)
            .await
            .0,
        200
    );
    assert_eq!(sso.session(&session).await.0, 401);
    let encoded = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    let (status, _, cookie, page) = sso.post_here("acme", &encoded).await;
    assert_eq!((status, cookie), (403, None));
    assert!(page.contains("does not have access"), "{page}");

    // Reactivated, the old session stays ended; a new login works.
    let mut reactivate = deactivate.clone();
    reactivate["Operations"][0]["value"] = json!(true);
    assert_eq!(
        sso.app
            .send_json("PATCH", &path, &sso.admin.token, &reactivate)
            .await
            .0,
        200
    );
    assert_eq!(sso.session(&session).await.0, 401);
    let again = sso.log_in("acme", "ada@example.com").await;
    assert_eq!(sso.session(&again).await.0, 200);
    // Deleting the member ends that one.
    let deleted = sso
        .app
        .client
        .delete(sso.app.url(&path))
        .bearer_auth(&sso.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(sso.session(&again).await.0, 401);

    // Just-in-time provisioning off: only SCIM members may log in.
    sso.set_idp(&json!({"options": {"jit": false}})).await;
    let encoded = sso
        .idp
        .response(&sso.login("acme", "bob@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &encoded).await.0, 403);
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bob@example.com",
    });
    assert_eq!(
        sso.app
            .send_json("POST", "/scim/v2/Users", &sso.admin.token, &user)
            .await
            .0,
        201
    );
    sso.log_in("acme", "bob@example.com").await;
    assert_eq!(
        sso.refusals("acme", &sso.admin).await,
        ["not_provisioned", "deactivated"]
    );
}

async fn groups_asserted_at_login_map_to_roles(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let path = "/api/v1/workspaces/acme/group-mappings/Engineering";
    let (status, body) = sso
        .app
        .send_json("PUT", path, &sso.admin.token, &json!({"role": "admin"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let login = sso
        .login("acme", "ada@example.com")
        .attribute("groups", &["engineering", "Unmapped"]);
    let (status, _, session, _) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    assert_eq!(status, 303);
    let session = session.unwrap();
    let roles = |token: String| {
        let sso = &sso;
        async move {
            let response = sso
                .with_cookie("GET", "/auth/verify", &token)
                .send()
                .await
                .unwrap();
            header(&response, "x-idgate-roles")
        }
    };
    assert_eq!(roles(session.clone()).await, "admin");

    // The next login without the group takes the role away, and says so in the audit log.
    let without = sso.log_in("acme", "ada@example.com").await;
    assert_eq!(roles(without).await, "");
    assert_eq!(
        roles(session).await,
        "",
        "roles are read live, not from the token"
    );
    let (_, log) = sso
        .app
        .get(
            "/api/v1/workspaces/acme/audit?action=saml.member.groups_changed",
            &sso.admin.token,
        )
        .await;
    let events = log["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{log}");
    assert_eq!(
        events[0]["details"]["removed"],
        json!(["Unmapped", "engineering"])
    );
    assert_eq!(
        events[1]["details"]["added"],
        json!(["Unmapped", "engineering"])
    );
}

async fn single_logout_works_both_ways_and_refuses_forgeries(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let body = json!({
        "entity_id": sso.idp.entity_id,
        "sso_url": "https://idp.example/sso",
        "slo_url": "https://idp.example/slo",
        "certificates": [sso.idp.certificate_pem()],
    });
    sso.set_idp(&body).await;

    // SP-initiated: the answer names the IdP's logout, with the session's NameID and index.
    let login = sso.login("acme", "ada@example.com");
    let (_, _, token, _) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    let token = token.unwrap();
    let (status, ended) = read(
        sso.with_cookie("POST", "/api/v1/session/logout", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let url = url::Url::parse(ended["idp_logout_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/slo");
    let xml = redirected_message(&url, "SAMLRequest");
    assert!(
        xml.contains("<saml:NameID>ada@example.com</saml:NameID>"),
        "{xml}"
    );
    assert!(xml.contains(&login.assertion_id), "the SessionIndex: {xml}");
    assert!(url.query_pairs().any(|(k, _)| k == "Signature"));

    // IdP-initiated: both of Ada's sessions end; Bob's stays.
    let first = sso.log_in("acme", "ada@example.com").await;
    let second = sso.log_in("acme", "ada@example.com").await;
    let bob = sso.log_in("acme", "bob@example.com").await;
    let slo = sso.app.url("/saml/acme/slo");
    let request = sso.idp.logout_request(&slo, "ada@example.com", None);
    let signed = |xml: &str, key: &openssl::pkey::PKey<openssl::pkey::Private>| {
        idgate::saml::binding::signed_redirect(&slo, "SAMLRequest", xml, Some("r1"), key).unwrap()
    };
    let response = sso
        .browser
        .get(signed(&request, sso.idp.key()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let back = header(&response, LOCATION);
    assert!(
        back.starts_with("https://idp.example/slo?SAMLResponse="),
        "{back}"
    );
    assert!(back.contains("&RelayState=r1&"), "{back}");
    assert_eq!(sso.session(&first).await.0, 401);
    assert_eq!(sso.session(&second).await.0, 401);
    assert_eq!(sso.session(&bob).await.0, 200);

    // Forgeries: unsigned, SHA-1, another key, a bomb, garbage. None ends Bob's session.
    let bobs = sso.idp.logout_request(&slo, "bob@example.com", None);
    let valid = signed(&bobs, sso.idp.key());
    let unsigned = valid.split("&SigAlg=").next().unwrap().to_owned();
    let sha1 = valid.replace("xmldsig-more%23rsa-sha256", "xmldsig%23rsa-sha1");
    let stranger = TestIdp::new(IDP_ENTITY);
    let bomb = signed(
        &format!("{}{}", bobs, " ".repeat(4 * 1024 * 1024)),
        sso.idp.key(),
    );
    for (forged, reason) in [
        (unsigned, "unsigned"),
        (sha1, "signature_algorithm"),
        (signed(&bobs, stranger.key()), "bad_signature"),
        (bomb, "too_large"),
        (
            format!("{slo}?SAMLRequest=%%%&SigAlg=x&Signature=%"),
            "signature_algorithm",
        ),
    ] {
        let response = sso.browser.get(&forged).send().await.unwrap();
        assert_eq!(response.status(), 400, "{reason}");
        let path = "/api/v1/workspaces/acme/audit?action=saml.logout.refused&limit=1";
        let (_, log) = sso.app.get(path, &sso.admin.token).await;
        assert_eq!(log["events"][0]["details"]["reason"], reason);
    }
    assert_eq!(sso.session(&bob).await.0, 200);

    // A LogoutRequest is good once, and only while fresh: a replay, a stale one and one from the
    // future end nothing.
    let third = sso.log_in("acme", "ada@example.com").await;
    let replayed = sso
        .browser
        .get(signed(&request, sso.idp.key()))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 400);
    let issued_at = |xml: &str, at: chrono::DateTime<chrono::Utc>| {
        let start = xml.find("IssueInstant=\"").unwrap() + "IssueInstant=\"".len();
        let end = start + xml[start..].find('"').unwrap();
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!("{}{at}{}", &xml[..start], &xml[end..])
    };
    let now = chrono::Utc::now();
    for (xml, reason) in [
        (issued_at(&bobs, now - TimeDelta::hours(1)), "expired"),
        (
            issued_at(&bobs, now + TimeDelta::hours(1)),
            "issued_in_future",
        ),
    ] {
        let response = sso
            .browser
            .get(signed(&xml, sso.idp.key()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{reason}");
    }
    let path = "/api/v1/workspaces/acme/audit?action=saml.logout.refused&limit=3";
    let (_, log) = sso.app.get(path, &sso.admin.token).await;
    let reasons: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["issued_in_future", "expired", "replay"]);
    assert_eq!(sso.session(&third).await.0, 200);
    assert_eq!(sso.session(&bob).await.0, 200);
}

/// A request to the admin API with a session cookie instead of a token.
async fn as_person(
    sso: &Sso,
    method: &str,
    path: &str,
    session: &str,
    body: &Value,
) -> (u16, Value) {
    read(
        sso.with_cookie(method, path, session)
            .send_json(body)
            .await
            .unwrap(),
    )
    .await
}

async fn a_session_acts_on_the_admin_api_as_its_roles_and_levels_allow(database: TestDatabase) {
    let sso = Sso::new(database).await;
    connect(&sso.app, "beta", &sso.idp).await;
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let token = &sso.admin.token;
    sso.app
        .send_json(
            "PUT",
            &api("/group-mappings/Engineering"),
            token,
            &json!({"role": "admin"}),
        )
        .await;
    let login = sso
        .login("acme", "ada@example.com")
        .attribute("groups", &["Engineering"]);
    let (_, _, ada, _) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    let ada = ada.unwrap();
    let bob = sso.log_in("acme", "bob@example.com").await;
    let none = json!({});

    // Ada is an Admin through her group: she manages the team, audited as herself.
    assert_eq!(
        as_person(&sso, "GET", &api("/audit"), &ada, &none).await.0,
        200
    );
    let (status, body) = as_person(
        &sso,
        "PUT",
        &api("/members/bob@example.com/roles"),
        &ada,
        &json!({"roles": ["member"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = sso.session(&ada).await;
    let (_, log) = sso
        .app
        .get(&api("/audit?action=access.roles.changed"), token)
        .await;
    assert_eq!(
        log["events"][0]["actor"],
        json!({"type": "person", "id": me["member_id"]})
    );

    // Bob is a Member now: he reads the workspace, not the audit log or tokens, and never SCIM.
    assert_eq!(
        as_person(&sso, "GET", "/api/v1/workspaces/acme", &bob, &none)
            .await
            .0,
        200
    );
    assert_eq!(
        as_person(&sso, "GET", &api("/audit"), &bob, &none).await.0,
        403
    );
    let new_token = json!({"scopes": ["workspace:read"]});
    assert_eq!(
        as_person(&sso, "POST", &api("/tokens"), &bob, &new_token)
            .await
            .0,
        403
    );
    assert_eq!(
        as_person(&sso, "GET", "/scim/v2/Users", &bob, &none)
            .await
            .0,
        401
    );
    // A workspace he is not a member of does not exist for him.
    assert_eq!(
        as_person(&sso, "GET", "/api/v1/workspaces/beta", &bob, &none)
            .await
            .0,
        404
    );

    // Resource levels: No Access hides a source; Read & Write edits but does not delete.
    let source = |name: &str| json!({"kind": "source", "name": name});
    let (_, prod) = sso
        .app
        .send_json("POST", &api("/resources"), token, &source("prod"))
        .await;
    let (_, dev) = sso
        .app
        .send_json("POST", &api("/resources"), token, &source("dev"))
        .await;
    let (prod, dev) = (prod["id"].as_str().unwrap(), dev["id"].as_str().unwrap());
    let grant = json!({"member": "bob@example.com", "resource": prod, "level": "no_access"});
    let (status, body) = sso
        .app
        .send_json("POST", &api("/grants"), token, &grant)
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, listed) = as_person(&sso, "GET", &api("/resources"), &bob, &none).await;
    let names: Vec<&str> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev"]);
    let prod_path = api(&format!("/resources/{prod}"));
    assert_eq!(as_person(&sso, "GET", &prod_path, &bob, &none).await.0, 404);
    let dev_path = api(&format!("/resources/{dev}"));
    let rename = json!({"name": "dev-eu"});
    assert_eq!(
        as_person(&sso, "PATCH", &dev_path, &bob, &rename).await.0,
        200
    );
    assert_eq!(
        as_person(&sso, "DELETE", &dev_path, &bob, &none).await.0,
        403
    );
    assert_eq!(
        as_person(&sso, "DELETE", &dev_path, &ada, &none).await.0,
        204
    );

    // Ownership passes from an Owner signed in, never from a token or an Admin.
    let transfer = api("/ownership/transfer");
    let to_bob = json!({"to": "bob@example.com"});
    assert_eq!(
        sso.app.send_json("POST", &transfer, token, &to_bob).await.0,
        403
    );
    assert_eq!(
        as_person(&sso, "POST", &transfer, &ada, &to_bob).await.0,
        403
    );
    let owner = json!({"roles": ["owner"]});
    let (status, body) = sso
        .app
        .send_json("PUT", &api("/members/ada@example.com/roles"), token, &owner)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, moved) = as_person(&sso, "POST", &transfer, &ada, &to_bob).await;
    assert_eq!(status, 200, "{moved}");
    let (_, bob_now) = sso.session(&bob).await;
    assert_eq!(
        bob_now["workspaces"][0]["roles"],
        json!(["owner", "member"]),
        "{bob_now}"
    );

    // Without a session, or with a logged-out one: 401.
    assert_eq!(
        as_person(&sso, "GET", &api(""), "garbage", &none).await.0,
        401
    );
}

async fn an_entra_login_finds_the_email_through_the_entra_preset(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let mut login = Login::entra(&sso.app.url(""), "acme", "ada@example.com");
    login.issued = sso.app.clock.now().and_utc();
    // With the default (Okta) names there is no email: the NameID is an opaque ID.
    let first = sso.idp.response(&login, Signed::Assertion);
    assert_eq!(sso.post_here("acme", &first).await.0, 400);
    assert_eq!(sso.refusals("acme", &sso.admin).await, ["no_subject"]);

    let preset = json!({"preset": "entra"});
    let path = "/api/v1/workspaces/acme/attribute-mapping";
    let (status, body) = sso
        .app
        .send_json("PUT", path, &sso.admin.token, &preset)
        .await;
    assert_eq!(status, 200, "{body}");
    login.assertion_id = format!("{}-again", login.assertion_id);
    let (status, _, session, page) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Assertion))
        .await;
    assert_eq!(status, 303, "{page}");
    let (_, me) = sso.session(&session.unwrap()).await;
    assert_eq!(me["email"], "ada@example.com");
}

async fn session_keys_rotate_and_stay_published_while_their_tokens_live(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let published = || {
        let sso = &sso;
        async move {
            let response = sso
                .app
                .client
                .get(sso.app.url("/.well-known/jwks.json"))
                .send()
                .await;
            let (_, set) = read(response.unwrap()).await;
            set["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    let old = sso.log_in("acme", "ada@example.com").await;
    assert_eq!(
        kid(&old),
        kid(&sso.log_in("acme", "bob@example.com").await),
        "one key a day"
    );

    sso.app.clock.advance(TimeDelta::days(2));
    let new = sso.log_in("acme", "ada@example.com").await;
    assert_ne!(kid(&old), kid(&new), "a new day, a new key");
    assert_eq!(published().await, [kid(&new), kid(&old)]);
    assert_eq!(sso.session(&old).await.0, 200, "the old key still verifies");

    // Past its last token's lifetime the old key is gone, and so is anything it signed.
    sso.app
        .clock
        .advance(TimeDelta::days(6) + TimeDelta::hours(1));
    assert_eq!(published().await, [kid(&new)]);
    assert_eq!(sso.session(&old).await.0, 401);
    assert_eq!(sso.session(&new).await.0, 200);
}

/// Two servers on one database: what one ends or changes, the other refuses or shows within a
/// second, though it had kept the answer (each is asked twice before): a mapping changed, a person
/// deprovisioned, a session ended, a token revoked.
async fn a_session_ended_through_one_replica_is_refused_by_another(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let replica = sso.app.spawn_replica().await;
    let on_replica = |path: &str, token: &str| {
        sso.app
            .client
            .get(format!("{replica}{path}"))
            .insert_header((COOKIE, format!("idgate_session={token}")))
    };
    let verify = |token: String| {
        let request = on_replica("/auth/verify", &token);
        async move {
            let response = request.send().await.unwrap();
            let roles = response
                .headers()
                .get("x-idgate-roles")
                .map(|roles| roles.to_str().unwrap().to_owned());
            (response.status().as_u16(), roles)
        }
    };

    sso.map_group("Engineering", "admin").await;
    let login = sso
        .login("acme", "ada@example.com")
        .attribute("groups", &["Engineering"]);
    let (status, _, ada, _) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    assert_eq!(status, 303);
    let ada = ada.unwrap();
    for _ in 0..2 {
        assert_eq!(verify(ada.clone()).await, (200, Some("admin".into())));
    }
    sso.map_group("Engineering", "read-only").await;
    seen_by_replica("a changed mapping", || async {
        verify(ada.clone()).await == (200, Some("read-only".into()))
    })
    .await;

    let grace = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@example.com",
        "emails": [{"value": "grace@example.com", "type": "work"}],
    });
    let (status, grace) = sso
        .app
        .send_json("POST", "/scim/v2/Users", &sso.admin.token, &grace)
        .await;
    assert_eq!(status, 201, "{grace}");
    let grace_session = sso.log_in("acme", "grace@example.com").await;
    for _ in 0..2 {
        assert_eq!(verify(grace_session.clone()).await.0, 200);
    }
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let path = format!("/scim/v2/Users/{}", grace["id"].as_str().unwrap());
    let (status, shown) = sso
        .app
        .send_json("PATCH", &path, &sso.admin.token, &deactivate)
        .await;
    assert_eq!(status, 200, "{shown}");
    seen_by_replica("a deprovisioned person", || async {
        verify(grace_session.clone()).await.0 == 401
    })
    .await;

    let logout = sso
        .with_cookie("POST", "/api/v1/session/logout", &ada)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    seen_by_replica("an ended session", || async {
        verify(ada.clone()).await.0 == 401
    })
    .await;
    assert_eq!(
        on_replica("/api/v1/session", &ada)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let scim_token = sso.app.token_for(&sso.admin.workspace, "scim");
    let users = || {
        sso.app
            .client
            .get(format!("{replica}/scim/v2/Users?count=1"))
            .bearer_auth(&scim_token.secret)
    };
    for _ in 0..2 {
        assert_eq!(users().send().await.unwrap().status(), 200);
    }
    let token_admin = sso.app.token_for(&sso.admin.workspace, "tokens:write");
    let path = format!("/api/v1/workspaces/acme/tokens/{}", scim_token.token.id);
    let revoked = sso
        .app
        .client
        .delete(sso.app.url(&path))
        .bearer_auth(&token_admin.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    seen_by_replica("a revoked token", || async {
        users().send().await.unwrap().status() == 401
    })
    .await;
}

/// `/metrics` counts requests by route template, SCIM writes, refusals by reason, cache events and
/// live sessions, and names no person, id or token. (Counters are the process's: other tests
/// running beside this one add to them, so this one asks for at least its own.)
async fn metrics_count_by_route_and_reason_and_name_no_one(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let session = sso.log_in("acme", "ada@example.com").await;
    let unsigned = sso
        .idp
        .response(&sso.login("acme", "eve@example.com"), Signed::Neither);
    assert_eq!(sso.post_here("acme", &unsigned).await.0, 400);
    let grace = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "grace@example.com",
    });
    let (status, grace) = sso
        .app
        .send_json("POST", "/scim/v2/Users", &sso.admin.token, &grace)
        .await;
    assert_eq!(status, 201, "{grace}");
    let id = grace["id"].as_str().unwrap();
    for _ in 0..2 {
        let path = format!("/scim/v2/Users/{id}");
        assert_eq!(sso.app.get(&path, &sso.admin.token).await.0, 200);
    }

    let mut response = sso
        .app
        .client
        .get(sso.app.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    let count = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let requests =
        r#"idgate_http_requests_total{method="GET",route="/scim/v2/Users/{id}",status="200"}"#;
    assert!(count(requests) >= 2.0);
    assert!(
        count(
            r#"idgate_http_request_duration_seconds_count{method="GET",route="/scim/v2/Users/{id}"}"#
        ) >= 2.0
    );
    assert!(
        count(r#"idgate_scim_operations_total{operation="create",outcome="ok",resource="User"}"#)
            >= 1.0
    );
    assert!(count(r#"idgate_saml_refusals_total{reason="unsigned"}"#) >= 1.0);
    assert!(count(r#"idgate_cache_events_total{cache="scim_users",event="hit"}"#) >= 1.0);
    assert!(count("idgate_sessions_live") >= 1.0);
    assert!(count(r#"idgate_db_pool_connections{state="in_use"}"#) >= 0.0);
    assert!(count("idgate_db_writer_queue") >= 0.0);
    for secret in [
        id,
        "ada@example.com",
        "eve@example.com",
        "acme",
        &session,
        &sso.admin.token,
    ] {
        assert!(!text.contains(secret), "/metrics names {secret}");
    }
}

async fn a_session_never_outlives_the_idps_session(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let mut login = sso.login("acme", "ada@example.com");
    let idp_end = login.issued + TimeDelta::hours(1);
    login.session_not_on_or_after = Some(idp_end);
    let (status, _, token, page) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    assert_eq!(status, 303, "{page}");
    let token = token.unwrap();
    let (_, me) = sso.session(&token).await;
    assert_eq!(
        me["expires_at"],
        idp_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    sso.app.clock.advance(TimeDelta::minutes(59));
    assert_eq!(sso.session(&token).await.0, 200);
    sso.app.clock.advance(TimeDelta::minutes(2));
    assert_eq!(sso.session(&token).await.0, 401);
}

/// The attack: the admin of `evil` points evil's IdP at a key they hold and asserts the email of
/// victim's Owner. The session that gives is evil's alone; victim needs its own IdP's word.
async fn a_workspaces_idp_speaks_for_no_one_in_another_workspace(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let victim = sso
        .app
        .tenant("victim", "scim,workspace:read,workspace:write,audit:read");
    let boss = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "boss@victim.example",
        "emails": [{"value": "boss@victim.example", "type": "work"}],
    });
    let (status, body) = sso
        .app
        .send_json("POST", "/scim/v2/Users", &victim.token, &boss)
        .await;
    assert_eq!(status, 201, "{body}");
    let roles = "/api/v1/workspaces/victim/members/boss@victim.example/roles";
    let owner = json!({"roles": ["owner"]});
    let (status, body) = sso.app.send_json("PUT", roles, &victim.token, &owner).await;
    assert_eq!(status, 200, "{body}");

    // evil's IdP is a key the attacker holds (the test IdP's); it asserts victim's Owner.
    connect(&sso.app, "evil", &sso.idp).await;
    let forged = sso.log_in("evil", "boss@victim.example").await;
    let none = json!({});
    let victim_api = |path: &str| format!("/api/v1/workspaces/victim{path}");
    for (method, path, body) in [
        (
            "POST",
            victim_api("/tokens"),
            json!({"scopes": ["workspace:read"]}),
        ),
        ("GET", victim_api("/audit"), none.clone()),
        ("GET", victim_api(""), none.clone()),
        ("PUT", roles.to_owned(), json!({"roles": ["member"]})),
    ] {
        let (status, answer) = as_person(&sso, method, &path, &forged, &body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    // Everything that describes the session names evil only.
    let (status, me) = sso.session(&forged).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["workspace"], "evil");
    let listed: Vec<&str> = me["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slug"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["evil"]);
    let verified = sso
        .with_cookie("GET", "/auth/verify", &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), 200);
    assert_eq!(header(&verified, "x-idgate-workspace"), "evil");
    assert_eq!(header(&verified, "x-idgate-roles"), "");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(forged.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["ws"], "evil");
    // Nothing happened in victim, least of all in its Owner's name.
    let (_, log) = sso
        .app
        .get(&victim_api("/audit?limit=100"), &victim.token)
        .await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["actor"]["type"] != "person"),
        "{log}"
    );
    let (_, members) = sso.app.get(&victim_api("/members"), &victim.token).await;
    assert_eq!(members["members"][0]["user_name"], "boss@victim.example");
    assert_eq!(
        members["members"][0]["roles"][0]["role"], "owner",
        "{members}"
    );

    // victim's own IdP is what speaks for its Owner there.
    let victim_idp = TestIdp::new("https://idp.victim.example");
    let body = json!({
        "entity_id": victim_idp.entity_id,
        "sso_url": "https://idp.victim.example/sso",
        "certificates": [victim_idp.certificate_pem()],
    });
    let (status, shown) = sso
        .app
        .send_json("PUT", &victim_api("/idp"), &victim.token, &body)
        .await;
    assert_eq!(status, 200, "{shown}");
    // evil's key is not victim's IdP: refused at victim's own ACS too.
    let by_evil = sso
        .idp
        .response(&sso.login("victim", "boss@victim.example"), Signed::Both);
    let (status, _, session, _) = sso.post_here("victim", &by_evil).await;
    assert_eq!((status, session), (400, None));
    let by_victim = victim_idp.response(&sso.login("victim", "boss@victim.example"), Signed::Both);
    let (status, _, session, body) = sso.post_here("victim", &by_victim).await;
    assert_eq!(status, 303, "{body}");
    let real = session.unwrap();
    let (status, token) = as_person(
        &sso,
        "POST",
        &victim_api("/tokens"),
        &real,
        &json!({"scopes": ["workspace:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    // And that session is victim's only: evil stays out of its reach.
    let (status, _) = as_person(&sso, "GET", "/api/v1/workspaces/evil", &real, &none).await;
    assert_eq!(status, 404);
}

async fn only_an_owner_makes_or_lowers_owners_and_minted_tokens_are_their_minters(
    database: TestDatabase,
) {
    let sso = Sso::new(database).await;
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let operator = &sso.admin.token;
    sso.map_group("Engineering", "admin").await;
    let login = sso
        .login("acme", "ada@example.com")
        .attribute("groups", &["Engineering"]);
    let (_, _, ada, _) = sso
        .post_here("acme", &sso.idp.response(&login, Signed::Both))
        .await;
    let ada = ada.unwrap();
    let olga = sso.log_in("acme", "olga@example.com").await;
    sso.log_in("acme", "bob@example.com").await;
    // The operator's token makes the first Owner.
    sso.set_roles("olga@example.com", &["owner"]).await;
    let owner = json!({"roles": ["owner"]});

    // Ada, an Admin, can neither make herself an Owner nor lower Olga, directly or by mappings.
    let member = json!({"roles": ["member"]});
    let to_owner = json!({"role": "owner"});
    let attempts = [
        ("PUT", api("/members/ada@example.com/roles"), owner.clone()),
        (
            "PUT",
            api("/members/olga@example.com/roles"),
            member.clone(),
        ),
        ("PUT", api("/group-mappings/Engineering"), to_owner.clone()),
        ("PUT", api("/group-mappings/Founders"), to_owner.clone()),
    ];
    for (method, path, body) in &attempts {
        let (status, answer) = as_person(&sso, method, path, &ada, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    // Nor through a token she mints: it is hers, expires in 90 days, and carries her authority.
    let (status, minted) = as_person(
        &sso,
        "POST",
        &api("/tokens"),
        &ada,
        &json!({"scopes": ["workspace:read", "workspace:write"]}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let (_, me) = sso.session(&ada).await;
    assert_eq!(minted["minted_by"], me["member_id"]);
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expires_at"].as_str().unwrap())
        .unwrap()
        .to_utc();
    assert_eq!((expires - chrono::Utc::now()).num_days(), 89);
    let ada_token = minted["secret"].as_str().unwrap().to_owned();
    for (method, path, body) in &attempts {
        let (status, answer) = sso.app.send_json(method, path, &ada_token, body).await;
        assert_eq!(status, 403, "{method} {path} by Ada's token: {answer}");
    }
    // What does not touch the owner role, an Admin still does.
    let (status, body) = as_person(
        &sso,
        "PUT",
        &api("/members/bob@example.com/roles"),
        &ada,
        &json!({"roles": ["member"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, members) = sso.app.get(&api("/members"), operator).await;
    let roles_of = |email: &str| -> Vec<String> {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_name"] == email)
            .unwrap()["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["role"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(roles_of("olga@example.com"), ["owner"]);
    assert_eq!(roles_of("ada@example.com"), ["admin"]);

    // Olga, an Owner, does all of it, signed in or through a token she mints.
    let (status, body) = as_person(
        &sso,
        "PUT",
        &api("/members/ada@example.com/roles"),
        &olga,
        &owner,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, olga_token) = as_person(
        &sso,
        "POST",
        &api("/tokens"),
        &olga,
        &json!({"scopes": ["workspace:write"], "expires_in": "1d"}),
    )
    .await;
    let olga_token = olga_token["secret"].as_str().unwrap();
    let (status, body) = sso
        .app
        .send_json(
            "PUT",
            &api("/group-mappings/Founders"),
            olga_token,
            &to_owner,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sso
        .app
        .send_json(
            "PUT",
            &api("/members/ada@example.com/roles"),
            olga_token,
            &member,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Ada's token holds what her roles give now: without the Admin mapping, no writes.
    let (status, _) = sso
        .app
        .send_json(
            "DELETE",
            &api("/group-mappings/Engineering"),
            olga_token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, answer) = sso
        .app
        .send_json(
            "PUT",
            &api("/group-mappings/Sales"),
            &ada_token,
            &json!({"role": "member"}),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(sso.app.get(&api(""), &ada_token).await.0, 200);

    // Deprovisioned, Ada's tokens end with her sessions.
    let ada_id = me["member_id"].as_str().unwrap();
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let (status, body) = sso
        .app
        .send_json(
            "PATCH",
            &format!("/scim/v2/Users/{ada_id}"),
            operator,
            &deactivate,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sso.app.get(&api(""), &ada_token).await.0, 401);
    let lister = sso
        .app
        .token_for(&sso.admin.workspace, "tokens:write")
        .secret;
    let (_, listed) = sso.app.get(&api("/tokens"), &lister).await;
    let ada_tokens: Vec<&Value> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["minted_by"] == ada_id)
        .collect();
    assert_eq!(ada_tokens.len(), 1);
    assert_eq!(ada_tokens[0]["status"], "revoked");
}

/// No Access hides a resource from a person everywhere their view is shown: in lists of what
/// others see, in explanations of others' permissions and in decisions about others. Callers
/// without a resource kind's read scope learn nothing of its resources either.
async fn a_resource_hidden_from_someone_is_named_to_them_nowhere(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let token = &sso.admin.token;
    let bob = sso.log_in("acme", "bob@example.com").await;
    sso.log_in("acme", "ada@example.com").await;
    sso.set_roles("bob@example.com", &["member"]).await;
    sso.set_roles("ada@example.com", &["admin"]).await;
    let (_, prod) = sso
        .app
        .send_json(
            "POST",
            &api("/resources"),
            token,
            &json!({"kind": "source", "name": "prod-secret-name"}),
        )
        .await;
    let prod = prod["id"].as_str().unwrap().to_owned();
    let grant = json!({"member": "bob@example.com", "resource": prod, "level": "no_access"});
    let (status, body) = sso
        .app
        .send_json("POST", &api("/grants"), token, &grant)
        .await;
    assert_eq!(status, 201, "{body}");
    let about_prod =
        json!({"subject": "ada@example.com", "action": "sources.edit", "resource": prod});
    let none = json!({});

    // Bob, signed in: what Ada sees, her permissions, a decision about her. None names prod.
    let (status, listed) = as_person(
        &sso,
        "GET",
        &api("/resources?visible_to=ada@example.com"),
        &bob,
        &none,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert!(!listed.to_string().contains("prod-secret-name"), "{listed}");
    let (status, explained) = as_person(
        &sso,
        "GET",
        &api("/members/ada@example.com/permissions"),
        &bob,
        &none,
    )
    .await;
    assert_eq!(status, 200, "{explained}");
    assert!(
        !explained.to_string().contains("prod-secret-name"),
        "{explained}"
    );
    let (status, decided) = as_person(&sso, "POST", &api("/authorize"), &bob, &about_prod).await;
    assert_eq!(status, 400, "{decided}");
    assert!(
        !decided.to_string().contains("prod-secret-name"),
        "{decided}"
    );
    let batch = json!({"checks": [about_prod.clone()]});
    let (status, decided) = as_person(&sso, "POST", &api("/authorize"), &bob, &batch).await;
    assert_eq!(status, 400, "{decided}");

    // A token that reads the workspace but not sources: the same.
    let reader = sso
        .app
        .token_for(&sso.admin.workspace, "workspace:read")
        .secret;
    let (status, explained) = sso
        .app
        .get(&api("/members/ada@example.com/permissions"), &reader)
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["resources"], json!([]), "{explained}");
    let (status, decided) = sso
        .app
        .send_json("POST", &api("/authorize"), &reader, &about_prod)
        .await;
    assert_eq!(status, 400, "{decided}");
    let about_team = json!({"subject": "ada@example.com", "action": "team.manage"});
    let (status, decided) = sso
        .app
        .send_json("POST", &api("/authorize"), &reader, &about_team)
        .await;
    assert_eq!(
        (status, decided["allowed"].clone()),
        (200, json!(true)),
        "{decided}"
    );

    // Whoever may see prod gets the whole answer.
    let (status, decided) = sso
        .app
        .send_json("POST", &api("/authorize"), token, &about_prod)
        .await;
    assert_eq!(status, 200, "{decided}");
    assert!(
        decided["reason"]
            .as_str()
            .unwrap()
            .contains("prod-secret-name")
    );
    let (_, explained) = sso
        .app
        .get(&api("/members/ada@example.com/permissions"), token)
        .await;
    assert!(
        explained.to_string().contains("prod-secret-name"),
        "{explained}"
    );
}

/// Read & Write on a source is not a way to Full Access through a label, and new labels are the
/// Owners' to bring in.
async fn labels_grant_nothing_to_whoever_applies_them(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let token = &sso.admin.token;
    let bob = sso.log_in("acme", "bob@example.com").await;
    let ada = sso.log_in("acme", "ada@example.com").await;
    sso.set_roles("bob@example.com", &["member"]).await;
    sso.set_roles("ada@example.com", &["admin"]).await;
    let create =
        |name: &str, labels: &[&str]| json!({"kind": "source", "name": name, "labels": labels});
    let (_, dev) = sso
        .app
        .send_json("POST", &api("/resources"), token, &create("dev", &[]))
        .await;
    let (_, shared) = sso
        .app
        .send_json(
            "POST",
            &api("/resources"),
            token,
            &create("shared", &["env:shared"]),
        )
        .await;
    assert_eq!(shared["labels"], json!(["env:shared"]), "{shared}");
    let dev = api(&format!("/resources/{}", dev["id"].as_str().unwrap()));
    for grant in [
        json!({"member": "bob@example.com", "resource": dev.rsplit('/').next().unwrap(), "level": "read_write"}),
        json!({"member": "bob@example.com", "label": "env:sandbox", "level": "full_access"}),
    ] {
        let (status, body) = sso
            .app
            .send_json("POST", &api("/grants"), token, &grant)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let labels = |labels: &[&str]| json!({ "labels": labels });

    // Under env:sandbox Bob would hold Full Access on dev: refused, and dev stays his to edit only.
    let (status, body) = as_person(&sso, "PATCH", &dev, &bob, &labels(&["env:sandbox"])).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        as_person(&sso, "DELETE", &dev, &bob, &json!({})).await.0,
        403
    );
    // A label nobody uses yet is an Owner's to bring in, even for an Admin.
    let (status, body) = as_person(&sso, "PATCH", &dev, &bob, &labels(&["team:new"])).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = as_person(&sso, "PATCH", &dev, &ada, &labels(&["team:new"])).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = as_person(
        &sso,
        "POST",
        &api("/resources"),
        &ada,
        &create("fresh", &["team:new"]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // A label in use that gives him nothing more, he may apply.
    let (status, body) = as_person(&sso, "PATCH", &dev, &bob, &labels(&["env:shared"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["labels"], json!(["env:shared"]));

    // The Owner brings the new label in.
    sso.set_roles("ada@example.com", &["owner"]).await;
    let (status, body) = as_person(&sso, "PATCH", &dev, &ada, &labels(&["team:new"])).await;
    assert_eq!(status, 200, "{body}");
}

/// A page on another site (or a sibling subdomain) can make the browser send the cookie along; it
/// must not change anything with it, not even by a bodiless POST.
async fn another_site_cannot_act_with_the_session_cookie(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let ada = sso.log_in("acme", "ada@example.com").await;
    sso.set_roles("ada@example.com", &["admin"]).await;
    let own_origin = sso.app.url("");
    let send = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut request = sso.with_cookie(method, path, &ada);
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        async move {
            request
                .send_json(&json!({"scopes": ["workspace:read"]}))
                .await
                .unwrap()
        }
    };
    let tokens = "/api/v1/workspaces/acme/tokens";
    for headers in [
        vec![("Origin", "https://evil.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", own_origin.as_str()),
        ],
        vec![("Origin", "null")],
    ] {
        let response = send("POST", tokens, &headers).await;
        assert_eq!(response.status(), 403, "{headers:?}");
        let response = send("POST", "/api/v1/session/logout", &headers).await;
        assert_eq!(response.status(), 403, "logout {headers:?}");
    }
    assert_eq!(sso.session(&ada).await.0, 200, "still signed in");
    // Reading is not changing: a cross-site GET answers as usual.
    let response = send(
        "GET",
        "/api/v1/workspaces/acme",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(response.status(), 200);
    // The service's own pages, and clients that are not browsers, act.
    let response = send("POST", tokens, &[("Sec-Fetch-Site", "same-origin")]).await;
    assert_eq!(response.status(), 201);
    let response = send("POST", tokens, &[("Origin", own_origin.as_str())]).await;
    assert_eq!(response.status(), 201);
    let response = send("POST", tokens, &[]).await;
    assert_eq!(response.status(), 201);
    let response = send(
        "POST",
        "/api/v1/session/logout",
        &[("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sso.session(&ada).await.0, 401);
}

/// Groups asserted at login replace the last ones, except the group that makes the workspace's
/// last Owner one: losing it would leave nobody to administer the workspace.
async fn a_login_never_takes_the_last_owners_owner_group(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let api = |path: &str| format!("/api/v1/workspaces/acme{path}");
    let token = &sso.admin.token;
    sso.map_group("Owners", "owner").await;
    let log_in_with = |groups: &'static [&'static str]| {
        let sso = &sso;
        async move {
            let login = sso
                .login("acme", "ada@example.com")
                .attribute("groups", groups);
            let (status, _, session, body) = sso
                .post_here("acme", &sso.idp.response(&login, Signed::Both))
                .await;
            assert_eq!(status, 303, "{body}");
            let (_, me) = sso.session(&session.unwrap()).await;
            me["workspaces"][0]["roles"].clone()
        }
    };
    assert_eq!(log_in_with(&["Owners"]).await, json!(["owner"]));
    // The IdP no longer says Owners: Ada is the only Owner, so the group stays.
    assert_eq!(log_in_with(&["Staff"]).await, json!(["owner"]));
    let (_, log) = sso
        .app
        .get(
            &api("/audit?action=saml.member.groups_changed&limit=1"),
            token,
        )
        .await;
    let details = &log["events"][0]["details"];
    assert_eq!(
        details["kept_for_the_last_owner"],
        json!(["Owners"]),
        "{log}"
    );
    assert_eq!(details["removed"], json!([]), "{log}");
    // With another Owner, the IdP's word holds.
    sso.log_in("acme", "bob@example.com").await;
    sso.set_roles("bob@example.com", &["owner"]).await;
    assert_eq!(log_in_with(&["Staff"]).await, json!([]));
}

/// Anyone may post to the ACS or start a login. A flood from one address is answered 429 once past
/// its burst, and however many refusals arrive, the audit log records a bounded number a minute.
async fn a_flood_of_forged_responses_is_slowed_and_audits_a_bounded_number(database: TestDatabase) {
    let app = TestApp::spawn_with_rate_limit(database, 100).await;
    let idp = TestIdp::new(IDP_ENTITY);
    let admin = connect(&app, "acme", &idp).await;
    let browser = awc::Client::builder().disable_redirects().finish();
    // Until the first 429: the burst, and what the rate added while it was spent.
    let started = std::time::Instant::now();
    let mut refused = 0;
    loop {
        let response = browser
            .post(app.url("/saml/acme/acs"))
            .send_form(&[("SAMLResponse", "bm90IFNBTUw=")])
            .await
            .unwrap();
        match response.status().as_u16() {
            400 => refused += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                break;
            }
            other => panic!("{other}"),
        }
        assert!(refused < 2000, "never slowed");
    }
    let allowed = 200.0 + 20.0 * started.elapsed().as_secs_f64() + 1.0;
    assert!(
        (200..=allowed as usize).contains(&refused),
        "{refused} refused before a 429, at most {allowed}"
    );
    // Starting logins counts toward the same allowance.
    let mut started = 0;
    let login = || browser.get(app.url("/saml/acme/login")).send();
    while login().await.unwrap().status() != 429 {
        started += 1;
        assert!(started < 2000, "logins never slowed");
    }

    let path = "/api/v1/workspaces/acme/audit?action=saml.login.refused&limit=1000";
    let (_, log) = app.get(path, &admin.token).await;
    assert_eq!(
        log["events"].as_array().unwrap().len(),
        60,
        "a minute's worth"
    );
}

/// An IdP reads `WantAssertionsSigned` to decide what to sign: it says what the connection enforces.
async fn the_sp_metadata_says_whether_assertions_must_be_signed(database: TestDatabase) {
    let sso = Sso::new(database).await;
    let want = |sso: &Sso| {
        let url = sso.app.url("/saml/acme/metadata");
        let client = sso.app.client.clone();
        async move {
            let mut response = client.get(url).send().await.unwrap();
            let xml = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
            let start = xml.find("WantAssertionsSigned=\"").unwrap() + 22;
            xml[start..start + xml[start..].find('"').unwrap()].to_owned()
        }
    };
    let outside_only = |sso: &Sso| {
        sso.idp
            .response(&sso.login("acme", "ada@example.com"), Signed::Response)
    };
    // By default a Response signed on the outside will do, and the metadata says so.
    assert_eq!(want(&sso).await, "false");
    let (status, _, _, body) = sso.post_here("acme", &outside_only(&sso)).await;
    assert_eq!(status, 303, "{body}");
    // Once the connection requires signed assertions, the metadata says that, and it holds.
    sso.set_idp(&json!({"options": {"require_signed_assertion": true}}))
        .await;
    assert_eq!(want(&sso).await, "true");
    let (status, _, session, _) = sso.post_here("acme", &outside_only(&sso)).await;
    assert_eq!((status, session), (400, None));
    assert_eq!(
        sso.refusals("acme", &sso.admin).await[0],
        "signature_policy"
    );
    let both = sso
        .idp
        .response(&sso.login("acme", "ada@example.com"), Signed::Both);
    assert_eq!(sso.post_here("acme", &both).await.0, 303);
}

/// Signs in with a Response that another tool made (fixtures/saml/DIR, with its make script): the
/// workspace's IdP is that tool's, its SP encryption key the one the fixture was made for, and the
/// service's clock a minute after the fixture was issued.
async fn sign_in_with_fixture(database: TestDatabase, dir: &str, idp: &str, issued: &str) -> Value {
    use diesel::RunQueryDsl;
    use idgate::db::schema::sp_keys;

    let fixture = |name: &str| {
        let path = format!("{}/fixtures/saml/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let app = TestApp::spawn_with(database, |settings| {
        settings.base_url = Some(idgate::config::BaseUrl::parse("http://idgate.test").unwrap());
    })
    .await;
    let admin = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let body = json!({
        "entity_id": idp,
        "sso_url": format!("{idp}/sso"),
        "certificates": [fixture("idp.crt")],
    });
    let (status, shown) = app
        .send_json("PUT", "/api/v1/workspaces/acme/idp", &admin.token, &body)
        .await;
    assert_eq!(status, 200, "{shown}");
    let certificate =
        openssl::x509::X509::from_pem(fixture("sp-encryption.crt").as_bytes()).unwrap();
    diesel::insert_into(sp_keys::table)
        .values((
            sp_keys::workspace_id.eq(&admin.workspace.id),
            sp_keys::purpose.eq("encryption"),
            sp_keys::private_key_pem.eq(fixture("sp-encryption.key")),
            sp_keys::certificate_der.eq(certificate.to_der().unwrap()),
            sp_keys::created_at.eq(idgate::time::now()),
        ))
        .execute(&mut *app.database.connect())
        .unwrap();
    let issued = chrono::DateTime::parse_from_rfc3339(issued.trim()).unwrap();
    let at = issued.to_utc() + TimeDelta::minutes(1);
    app.clock.advance(at - app.clock.now().and_utc());

    let browser = awc::Client::builder().disable_redirects().finish();
    let response = browser
        .post(app.url("/saml/acme/acs"))
        .send_form(&[("SAMLResponse", STANDARD.encode(fixture("response.xml")))])
        .await
        .unwrap();
    if response.status() != 303 {
        let path = "/api/v1/workspaces/acme/audit?action=saml.login.refused";
        let (_, log) = app.get(path, &admin.token).await;
        panic!("{}: {}", response.status(), log["events"][0]["details"]);
    }
    let session = cookie_of(&response, "idgate_session").expect("a session");
    let (status, me) = read(
        app.client
            .get(app.url("/api/v1/session"))
            .insert_header((COOKIE, format!("idgate_session={session}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    me
}

/// Made by the xmlsec1 command (fixtures/saml/xmlsec1/make.sh), shaped as pysaml2, Shibboleth and
/// ADFS send it: unsigned, the assertion signed and then encrypted from xmlsec1's template
/// (AES-256-CBC, the key by RSA-OAEP inside ds:KeyInfo), `ds` declared on the root only.
async fn an_assertion_xmlsec1_encrypted_as_real_idps_do_signs_in(database: TestDatabase) {
    let me = sign_in_with_fixture(
        database,
        "xmlsec1",
        "https://idp.xmlsec1.test",
        "2026-12-02T04:30:00Z",
    )
    .await;
    assert_eq!(me["email"], "grace@example.com");
}

/// Made by pysaml2 as an IdP with its defaults (fixtures/saml/pysaml2/make.py): the assertion
/// signed, then encrypted with triple-DES-CBC (pysaml2's only choice), prefixes `ns0`/`ns1`
/// meaning one namespace on the Response and another inside the encryption.
async fn an_assertion_pysaml2_encrypted_signs_in(database: TestDatabase) {
    let issued = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/saml/pysaml2/issued.txt"
    ))
    .unwrap();
    let me = sign_in_with_fixture(database, "pysaml2", "https://idp.pysaml2.test", &issued).await;
    assert_eq!(me["email"], "linus@example.com");
}

/// A new deployment right after its first import has no statistics yet (no ANALYZE has run): the
/// session check's lookups of a person by userName and by email still go through their indexes.
/// (PostgreSQL planned one as a sequential scan of every stored value until the first ANALYZE.)
#[actix_web::test]
async fn session_checks_use_their_indexes_before_the_first_analyze() {
    use diesel::connection::SimpleConnection;

    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let mut conn = database.connect();
    let workspace = helpers::workspace(&mut conn, "acme");
    conn.batch_execute(&format!(
        "INSERT INTO scim_users (id, workspace_id, user_name, user_name_ci, active, document, \
                                 version, created_at, updated_at) \
           SELECT 'u' || n, '{ws}', 'user' || n || '@example.com', 'user' || n || '@example.com', \
                  true, '{{}}', 1, now(), now() \
           FROM generate_series(1, 20000) AS n; \
         INSERT INTO scim_values (workspace_id, resource_type, resource_id, attribute, element, \
                                  sub, value, value_ci) \
           SELECT '{ws}', 'User', 'u' || n, 'emails', 0, 'value', 'Mail' || n || '@example.com', \
                  'mail' || n || '@example.com' \
           FROM generate_series(1, 20000) AS n;",
        ws = workspace.id
    ))
    .unwrap();

    let tables = ["scim_users", "scim_values"];
    let sequential_scans =
        |conn: &mut idgate::db::Conn| transaction_counter(conn, "seq_scan", &tables);
    conn.batch_execute("BEGIN").unwrap();
    let before = sequential_scans(&mut conn);
    let by_name = idgate::directory::memberships_of(&mut conn, "user42@example.com").unwrap();
    let by_email = idgate::directory::memberships_of(&mut conn, "mail4242@example.com").unwrap();
    let scans = sequential_scans(&mut conn) - before;
    conn.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        (by_name.len(), by_email.len()),
        (1, 1),
        "each is found, by userName and by email"
    );
    assert_eq!(scans, 0, "the lookups scanned a whole table");
}
