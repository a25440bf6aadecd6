//! The workspace's SAML IdP connection: set from metadata (a file, a URL, or the API body) or by
//! hand, shown with each certificate's expiry, options changed alone, bad input refused.

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::x509::X509;
use serde_json::{Value, json};

use idgate::outbound::InternalAllowList;

use crate::helpers::{TestApp, TestDatabase, failure_line, stdout};
use crate::on_both_databases;
use crate::saml_idp::self_signed;

on_both_databases!(
    a_connection_is_set_from_a_metadata_file_and_shown,
    a_connection_is_set_from_a_metadata_url,
    metadata_urls_reach_no_internal_address_unless_the_operator_allows_it,
    a_connection_is_set_by_hand_through_the_api,
    unusable_metadata_and_settings_are_refused_with_the_reason,
    sp_metadata_carries_stable_keys_and_the_acs,
    sp_initiated_login_redirects_with_a_signed_request,
);

const IDP: &str = "/api/v1/workspaces/acme/idp";

/// A self-signed certificate valid for `days`.
fn certificate(common_name: &str, days: u32) -> X509 {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    self_signed(&key, common_name, days)
}

fn base64(certificate: &X509) -> String {
    base64::engine::general_purpose::STANDARD.encode(certificate.to_der().unwrap())
}

fn pem(certificate: &X509) -> String {
    String::from_utf8(certificate.to_pem().unwrap()).unwrap()
}

/// Okta-style metadata: prefixed elements, a signing key, a key without `use` (signing too), an
/// encryption key (not for signing), POST and Redirect SSO bindings.
fn okta_metadata(signing: &X509, unlabelled: &X509, encryption: &X509) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="http://www.okta.com/exk1" validUntil="2031-01-01T00:00:00Z">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://acme.okta.com/app/post"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://acme.okta.com/app/redirect"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://acme.okta.com/app/slo"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#,
        base64(signing),
        base64(unlabelled),
        base64(encryption)
    )
}

/// Entra-style metadata: a default namespace and no prefixes.
fn entra_metadata(signing: &X509) -> String {
    format!(
        r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" ID="_abc" entityID="https://sts.windows.net/tenant/"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{}</X509Certificate></X509Data></KeyInfo></KeyDescriptor><SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://login.microsoftonline.com/tenant/saml2"/><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://login.microsoftonline.com/tenant/saml2"/></IDPSSODescriptor></EntityDescriptor>"#,
        base64(signing)
    )
}

fn lines(output: &str) -> Vec<Vec<&str>> {
    output
        .lines()
        .map(|line| line.split('\t').collect())
        .collect()
}

async fn a_connection_is_set_from_a_metadata_file_and_shown(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let (signing, rollover, encryption) = (
        certificate("okta signing", 365),
        certificate("okta next", 10),
        certificate("okta encryption", 365),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("okta.xml");
    std::fs::write(&file, okta_metadata(&signing, &rollover, &encryption)).unwrap();

    let set = app
        .cli(&[
            "idp",
            "set",
            "--workspace",
            "acme",
            "--metadata",
            file.to_str().unwrap(),
        ])
        .await;
    assert!(set.status.success(), "{set:?}");
    let shown = app.cli(&["idp", "show", "--workspace", "acme"]).await;
    let output = stdout(&shown);
    let rows = lines(&output);
    let value = |key: &str| rows.iter().find(|row| row[0] == key).map(|row| row[1]);
    assert_eq!(value("entity_id"), Some("http://www.okta.com/exk1"));
    assert_eq!(value("sso_url"), Some("https://acme.okta.com/app/redirect"));
    assert_eq!(value("slo_url"), Some("https://acme.okta.com/app/slo"));
    assert_eq!(value("metadata_valid_until"), Some("2031-01-01T00:00:00Z"));
    assert_eq!(value("allow_idp_initiated"), Some("true"));
    assert_eq!(value("clock_skew_seconds"), Some("120"));
    assert_eq!(value("jit"), Some("true"));
    let certificates: Vec<(&str, &str)> = rows
        .iter()
        .filter(|row| row[0] == "certificate")
        .map(|row| (row[4], row[2]))
        .collect();
    assert_eq!(
        certificates,
        [("okta next", "expiring"), ("okta signing", "valid")],
        "signing keys only, soonest expiry first: {output}"
    );

    // Options change alone; the IdP stays.
    let changed = app
        .cli(&[
            "idp",
            "set",
            "--workspace",
            "acme",
            "--jit",
            "false",
            "--clock-skew",
            "60",
        ])
        .await;
    assert!(changed.status.success(), "{changed:?}");
    let (status, connection) = app.get(IDP, &tenant.token).await;
    assert_eq!(status, 200, "{connection}");
    assert_eq!(connection["entity_id"], "http://www.okta.com/exk1");
    assert_eq!(connection["options"]["jit"], false);
    assert_eq!(connection["options"]["clock_skew_seconds"], 60);
    assert_eq!(connection["usable_certificates"], 2);
    let fingerprint = hex(&signing.digest(MessageDigest::sha256()).unwrap());
    assert!(
        connection["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["fingerprint"] == fingerprint.as_str())
    );

    let (_, log) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=saml.connection.set",
            &tenant.token,
        )
        .await;
    let events = log["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{log}");
    assert_eq!(events[0]["details"]["before"]["options"]["jit"], true);
    assert_eq!(events[0]["details"]["after"]["options"]["jit"], false);
    assert_eq!(events[1]["details"]["before"], Value::Null);

    // The background round audits the certificate near its expiry, once however often it runs.
    let store = idgate::db::Store::open(&app.database.database_url()).unwrap();
    for _ in 0..2 {
        idgate::saml::refresh::refresh_all(&store, &InternalAllowList::default()).await;
    }
    let (_, log) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=saml.certificate.expiring",
            &tenant.token,
        )
        .await;
    let events = log["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{log}");
    assert_eq!(events[0]["details"]["subject"], "okta next");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn a_connection_is_set_from_a_metadata_url(database: TestDatabase) {
    use idgate::saml::refresh::{Outcome, refresh_all};
    use std::sync::{Arc, Mutex};

    // The IdP is on this machine, so the operator allows its address.
    let allowed = InternalAllowList::parse("127.0.0.1/32").unwrap();
    let app = TestApp::spawn_with(database, |settings| {
        settings.allowed_internal_hosts = allowed.clone();
    })
    .await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    // What the IdP serves; None stands for an IdP that answers 500.
    let served = Arc::new(Mutex::new(Some(entra_metadata(&certificate(
        "Microsoft Azure Federated SSO Certificate",
        1095,
    )))));
    let shared = served.clone();
    // A service on an address nobody allowed, and two redirects: to it, and to the metadata.
    let internal = HttpServer::new(|| App::new().default_service(web::to(HttpResponse::Ok)))
        .workers(1)
        .bind("127.0.0.2:0")
        .unwrap();
    let internal_url = format!("http://{}/", internal.addrs()[0]);
    actix_web::rt::spawn(internal.run());
    let server = HttpServer::new(move || {
        let shared = shared.clone();
        let internal_url = internal_url.clone();
        App::new()
            .route(
                "/to-internal",
                web::get().to(move || {
                    let to = internal_url.clone();
                    async move {
                        HttpResponse::Found()
                            .insert_header(("Location", to))
                            .finish()
                    }
                }),
            )
            .route(
                "/moved",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("Location", "/federationmetadata.xml"))
                        .finish()
                }),
            )
            .route(
                "/federationmetadata.xml",
                web::get().to(move || {
                    let xml = shared.lock().unwrap().clone();
                    async move {
                        match xml {
                            Some(xml) => {
                                HttpResponse::Ok().content_type("application/xml").body(xml)
                            }
                            None => HttpResponse::InternalServerError().finish(),
                        }
                    }
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    let url = format!("http://{address}/federationmetadata.xml");

    let (status, connection) = app
        .send_json("PUT", IDP, &tenant.token, &json!({"metadata_url": url}))
        .await;
    assert_eq!(status, 200, "{connection}");
    assert_eq!(connection["entity_id"], "https://sts.windows.net/tenant/");
    assert_eq!(connection["metadata_url"], url.as_str());
    assert_eq!(
        connection["sso_url"],
        "https://login.microsoftonline.com/tenant/saml2"
    );

    // The IdP rolls its certificate: the next refresh takes the new one.
    *served.lock().unwrap() = Some(entra_metadata(&certificate("rolled over", 1095)));
    let store = idgate::db::Store::open(&app.database.database_url()).unwrap();
    assert_eq!(
        refresh_all(&store, &allowed).await,
        [("acme".to_owned(), Outcome::Refreshed)]
    );
    let (_, refreshed) = app.get(IDP, &tenant.token).await;
    assert_eq!(refreshed["certificates"][0]["subject"], "rolled over");
    let (_, log) = app
        .get(
            "/api/v1/workspaces/acme/audit?actor=system:metadata-refresh",
            &tenant.token,
        )
        .await;
    assert_eq!(log["events"][0]["action"], "saml.connection.set", "{log}");

    // An IdP that fails, or serves something unusable, leaves the last good copy in place.
    *served.lock().unwrap() = None;
    let outcomes = refresh_all(&store, &allowed).await;
    assert!(
        matches!(&outcomes[..], [(_, Outcome::Kept(reason))] if reason.contains("500")),
        "{outcomes:?}"
    );
    *served.lock().unwrap() = Some("<html>maintenance</html>".to_owned());
    assert!(matches!(
        &refresh_all(&store, &allowed).await[..],
        [(_, Outcome::Kept(_))]
    ));
    assert_eq!(app.get(IDP, &tenant.token).await.1, refreshed);
    // Nor does the refresh reach past what the operator allowed.
    assert!(matches!(
        &refresh_all(&store, &InternalAllowList::default()).await[..],
        [(_, Outcome::Kept(reason))] if reason.contains("internal address")
    ));

    // What a URL serves is never repeated back.
    *served.lock().unwrap() = Some("<html>db password: hunter2</html>".to_owned());
    let (status, refused) = app
        .send_json("PUT", IDP, &tenant.token, &json!({"metadata_url": url}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(!refused.to_string().contains("hunter2"), "{refused}");
    *served.lock().unwrap() = Some(entra_metadata(&certificate("again", 1095)));

    // Redirects are followed, and each hop is held to the same rule.
    let moved = format!("http://{address}/moved");
    let (status, body) = app
        .send_json("PUT", IDP, &tenant.token, &json!({"metadata_url": moved}))
        .await;
    assert_eq!(status, 200, "{body}");
    let to_internal = format!("http://{address}/to-internal");
    let (status, refused) = app
        .send_json(
            "PUT",
            IDP,
            &tenant.token,
            &json!({"metadata_url": to_internal}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("127.0.0.2"),
        "{refused}"
    );

    let missing = format!("http://{address}/nothing-here");
    let (status, refused) = app
        .send_json("PUT", IDP, &tenant.token, &json!({"metadata_url": missing}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("404"),
        "{refused}"
    );
}

/// Any workspace admin names the metadata URL, so by default it reaches no internal address: not
/// by address, not by a name that resolves to one, not by another spelling of one.
async fn metadata_urls_reach_no_internal_address_unless_the_operator_allows_it(
    database: TestDatabase,
) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let entra = entra_metadata(&certificate("internal", 365));
    let server = HttpServer::new(move || {
        let xml = entra.clone();
        App::new().default_service(web::to(move || {
            let xml = xml.clone();
            async move { HttpResponse::Ok().content_type("application/xml").body(xml) }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    for host in [
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "127.1".to_owned(),
        "2130706433".to_owned(),
        "[::ffff:127.0.0.1]".to_owned(),
        "[::1]".to_owned(),
        "0.0.0.0".to_owned(),
    ] {
        let url = format!("http://{host}:{port}/federationmetadata.xml");
        let (status, refused) = app
            .send_json("PUT", IDP, &tenant.token, &json!({"metadata_url": url}))
            .await;
        assert_eq!(status, 400, "{url}: {refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("is an internal address"),
            "{url}: {refused}"
        );
    }
    assert_eq!(app.get(IDP, &tenant.token).await.0, 404, "nothing was set");

    // The CLI holds to the same rule, and the operator's setting opens it.
    let url = format!("http://127.0.0.1:{port}/federationmetadata.xml");
    let refused = app
        .cli(&["idp", "set", "--workspace", "acme", "--metadata", &url])
        .await;
    assert!(failure_line(&refused).contains("internal address"));
    let allowed = app
        .cli(&[
            "idp",
            "set",
            "--workspace",
            "acme",
            "--metadata",
            &url,
            "--allowed-internal-hosts",
            "127.0.0.0/8",
        ])
        .await;
    assert!(allowed.status.success(), "{}", stdout(&allowed));
}

async fn a_connection_is_set_by_hand_through_the_api(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write");
    let (status, _) = app.get(IDP, &tenant.token).await;
    assert_eq!(status, 404, "no connection yet");

    let (current, next) = (certificate("current", 200), certificate("next", 700));
    let body = json!({
        "entity_id": "https://idp.example.com/saml",
        "sso_url": "https://idp.example.com/sso",
        "slo_url": "https://idp.example.com/slo",
        "certificates": [pem(&current), pem(&next)],
        "options": {"allow_idp_initiated": false, "require_signed_assertion": true, "force_authn": true,
                    "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
    });
    let (status, connection) = app.send_json("PUT", IDP, &tenant.token, &body).await;
    assert_eq!(status, 200, "{connection}");
    assert_eq!(
        connection["certificates"].as_array().unwrap().len(),
        2,
        "rollover: both trusted"
    );
    assert_eq!(connection["options"]["allow_idp_initiated"], false);
    assert_eq!(connection["options"]["require_signed_assertion"], true);
    assert_eq!(
        connection["options"]["jit"], true,
        "defaults for what was not given"
    );
    assert_eq!(app.get(IDP, &tenant.token).await.1, connection);

    // Another workspace's token sees nothing; a read-only token changes nothing.
    let other = app.tenant("globex", "workspace:read,workspace:write");
    assert_eq!(app.get(IDP, &other.token).await.0, 404);
    let reader = app.token_for(&tenant.workspace, "workspace:read");
    let (status, _) = app
        .send_json(
            "PUT",
            IDP,
            &reader.secret,
            &json!({"options": {"jit": false}}),
        )
        .await;
    assert_eq!(status, 403);
}

async fn unusable_metadata_and_settings_are_refused_with_the_reason(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write,audit:read");
    let cert = certificate("c", 30);
    let good = okta_metadata(&cert, &cert, &cert);
    let no_signing_key = good
        .replace(
            "<md:KeyDescriptor use=\"signing\">",
            "<md:KeyDescriptor use=\"encryption\">",
        )
        .replace(
            "<md:KeyDescriptor>",
            "<md:KeyDescriptor use=\"encryption\">",
        );
    let cases = [
        (
            json!({"metadata_xml": format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{good}")}),
            "document type",
        ),
        (
            json!({"metadata_xml": good.replace("entityID=\"http://www.okta.com/exk1\"", "")}),
            "entityID",
        ),
        (
            json!({"metadata_xml": good.replace("HTTP-Redirect\" Location=\"https://acme.okta.com/app/redirect", "SOAP\" Location=\"x")}),
            "HTTP-Redirect",
        ),
        (
            json!({"metadata_xml": good.replace(&base64(&cert), "bm90IGEgY2VydA==")}),
            "unreadable",
        ),
        (
            json!({"metadata_xml": no_signing_key}),
            "no signing certificate",
        ),
        (
            json!({"metadata_xml": r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>"#}),
            "IDPSSODescriptor",
        ),
        (
            json!({"metadata_xml": "<html>not metadata</html>"}),
            "EntityDescriptor",
        ),
        (json!({"metadata_xml": "x".repeat(2 << 20)}), "larger than"),
        (
            json!({"entity_id": "https://idp", "sso_url": "https://idp/sso", "certificates": []}),
            "at least one IdP signing certificate",
        ),
        (
            json!({"entity_id": "https://idp", "sso_url": "https://idp/sso", "certificates": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}),
            "PEM",
        ),
        (
            json!({"entity_id": "https://idp", "sso_url": "javascript:alert(1)", "certificates": [pem(&cert)]}),
            "http(s) URL",
        ),
        (
            json!({"metadata_xml": good, "entity_id": "https://idp"}),
            "give one of",
        ),
        (json!({"metadata_url": "file:///etc/passwd"}), "http(s) URL"),
    ];
    for (body, expected) in cases {
        let (status, refused) = app.send_json("PUT", IDP, &tenant.token, &body).await;
        assert_eq!(
            status,
            if expected == "larger than" { 413 } else { 400 },
            "{expected}: {refused}"
        );
        if status == 400 {
            assert!(
                refused["message"].as_str().unwrap().contains(expected),
                "{expected}: {refused}"
            );
        }
    }
    let (status, refused) = app
        .send_json(
            "PUT",
            IDP,
            &tenant.token,
            &json!({"options": {"jit": false}}),
        )
        .await;
    assert_eq!(status, 404, "options need a connection first: {refused}");

    app.send_json("PUT", IDP, &tenant.token, &json!({"metadata_xml": good}))
        .await;
    let (status, _) = app
        .send_json(
            "PUT",
            IDP,
            &tenant.token,
            &json!({"options": {"clock_skew_seconds": 3600}}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, log) = app
        .get(
            "/api/v1/workspaces/acme/audit?action=saml.connection.set",
            &tenant.token,
        )
        .await;
    assert_eq!(
        log["events"].as_array().unwrap().len(),
        1,
        "only the good one: {log}"
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.xml");
    let output = app
        .cli(&[
            "idp",
            "set",
            "--workspace",
            "acme",
            "--metadata",
            missing.to_str().unwrap(),
        ])
        .await;
    assert!(failure_line(&output).contains("cannot read the metadata file"));
    let output = app
        .cli(&[
            "idp",
            "set",
            "--workspace",
            "acme",
            "--entity-id",
            "https://idp",
        ])
        .await;
    assert!(failure_line(&output).contains("--entity-id, --sso-url and --cert"));
}

async fn sp_metadata_carries_stable_keys_and_the_acs(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    app.tenant("acme", "workspace:read");
    let fetch = |base: String| {
        let client = &app.client;
        async move {
            let mut response = client
                .get(format!("{base}/saml/acme/metadata"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let content_type = response
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(content_type, "application/samlmetadata+xml");
            String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
        }
    };
    let first = fetch(app.url("")).await;
    // Without a configured base URL each test server names itself by its own address.
    let replica = app.spawn_replica().await;
    assert_eq!(
        fetch(replica.clone()).await.replace(&replica, &app.url("")),
        first,
        "the same keys on every replica, every time"
    );
    assert!(!first.contains("PRIVATE"), "never a private key");

    let descriptor: samael::metadata::EntityDescriptor = first.parse().unwrap();
    let entity_id = descriptor.entity_id.clone().unwrap();
    assert!(entity_id.ends_with("/saml/acme/metadata"), "{entity_id}");
    let sp = &descriptor.sp_sso_descriptors.as_ref().unwrap()[0];
    assert_eq!(sp.authn_requests_signed, Some(true));
    assert_eq!(
        sp.want_assertions_signed,
        Some(false),
        "a Response signed on the outside will do by default"
    );
    let acs = &sp.assertion_consumer_services[0];
    assert_eq!(
        acs.binding,
        "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    );
    assert_eq!(acs.location, entity_id.replace("/metadata", "/acs"));
    let keys = sp.key_descriptors.as_ref().unwrap();
    let uses: Vec<Option<&str>> = keys.iter().map(|k| k.key_use.as_deref()).collect();
    assert_eq!(uses, [Some("signing"), Some("encryption")]);
    let certificates: Vec<X509> = keys
        .iter()
        .map(|k| {
            let encoded = &k.key_info.x509_data.as_ref().unwrap().certificates[0];
            let der = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            X509::from_der(&der).unwrap()
        })
        .collect();
    assert_ne!(
        certificates[0].to_der().unwrap(),
        certificates[1].to_der().unwrap(),
        "one key signs, another decrypts"
    );
    assert!(
        certificates
            .iter()
            .all(|c| c.public_key().unwrap().bits() >= 2048)
    );

    let mut missing = app
        .client
        .get(app.url("/saml/nope/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let _ = missing.body().await;
}

/// The SP's signing certificate, as its metadata publishes it.
async fn sp_signing_certificate(app: &TestApp) -> X509 {
    let mut response = app
        .client
        .get(app.url("/saml/acme/metadata"))
        .send()
        .await
        .unwrap();
    let xml = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    let descriptor: samael::metadata::EntityDescriptor = xml.parse().unwrap();
    let sp = &descriptor.sp_sso_descriptors.unwrap()[0];
    let key = sp
        .key_descriptors
        .as_ref()
        .unwrap()
        .iter()
        .find(|k| k.key_use.as_deref() == Some("signing"))
        .unwrap();
    let encoded = &key.key_info.x509_data.as_ref().unwrap().certificates[0];
    X509::from_der(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

async fn sp_initiated_login_redirects_with_a_signed_request(database: TestDatabase) {
    use diesel::prelude::*;
    use idgate::db::schema::saml_requests;
    use std::io::Read;

    let app = TestApp::spawn(database).await;
    let tenant = app.tenant("acme", "workspace:read,workspace:write");
    let browser = awc::Client::builder().disable_redirects().finish();
    let login = |relay: &'static str| {
        let browser = &browser;
        let url = app.url(&format!("/saml/acme/login?RelayState={relay}"));
        async move { browser.get(url).send().await.unwrap() }
    };
    let mut not_set_up = login("/").await;
    assert_eq!(not_set_up.status(), 404);
    let page = String::from_utf8(not_set_up.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains("not set up"), "{page}");

    let body = json!({
        "entity_id": "https://idp.example.com/saml",
        "sso_url": "https://idp.example.com/sso?tenant=1",
        "certificates": [pem(&certificate("idp", 365))],
        "options": {"force_authn": true, "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"},
    });
    assert_eq!(app.send_json("PUT", IDP, &tenant.token, &body).await.0, 200);

    let response = login("/dashboard%3Ftab%3D1").await;
    assert_eq!(response.status(), 303);
    let location = response
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let prefix = "https://idp.example.com/sso?tenant=1&";
    assert!(location.starts_with(prefix), "{location}");
    let (signed, signature) = location[prefix.len()..].split_once("&Signature=").unwrap();
    let url = url::Url::parse(&location).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };

    // The signature covers exactly the query that precedes it, with the SP's published key.
    let signature: String = url::form_urlencoded::parse(format!("s={signature}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    let certificate = sp_signing_certificate(&app).await;
    let key = certificate.public_key().unwrap();
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &key).unwrap();
    verifier.update(signed.as_bytes()).unwrap();
    assert!(
        verifier.verify(&signature).unwrap(),
        "the Redirect-binding signature verifies"
    );
    assert_eq!(
        param("SigAlg"),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );

    let deflated = base64::engine::general_purpose::STANDARD
        .decode(param("SAMLRequest"))
        .unwrap();
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .unwrap();
    let id = param("RelayState");
    assert_eq!(
        id.len(),
        41,
        "an underscore and 160 random bits in hex: {id}"
    );
    assert!(xml.contains(&format!(r#"ID="{id}""#)), "{xml}");
    assert!(
        xml.contains(r#"Destination="https://idp.example.com/sso?tenant=1""#),
        "{xml}"
    );
    assert!(xml.contains(r#"ForceAuthn="true""#), "{xml}");
    assert!(
        xml.contains(
            r#"<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress""#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            r#"AssertionConsumerServiceURL="{}""#,
            app.url("/saml/acme/acs")
        )),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<saml:Issuer>{}</saml:Issuer>",
            app.url("/saml/acme/metadata")
        )),
        "{xml}"
    );

    // The request is stored once, bound to this browser's cookie, with the path to return to.
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    let cookie = actix_web::cookie::Cookie::parse(set_cookie.to_owned()).unwrap();
    assert_eq!(cookie.name(), "idgate_saml_request");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/saml/acme/acs"));
    assert_eq!(
        (cookie.same_site(), cookie.secure()),
        (Some(actix_web::cookie::SameSite::None), Some(true)),
        "the IdP's POST is cross-site; 127.0.0.1 is a secure context"
    );
    let mut conn = app.database.connect();
    let (path, hash): (String, Vec<u8>) = saml_requests::table
        .find(&id)
        .select((saml_requests::relay_path, saml_requests::browser_hash))
        .first(&mut *conn)
        .unwrap();
    assert_eq!(path, "/dashboard?tab=1");
    assert_eq!(
        hash,
        openssl::sha::sha256(cookie.value().as_bytes()).to_vec()
    );

    // An expired request is cleared away by the next login.
    let expired_id = id.clone();
    diesel::update(saml_requests::table.find(&id))
        .set(
            saml_requests::expires_at.eq(chrono::NaiveDate::from_ymd_opt(2020, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()),
        )
        .execute(&mut *conn)
        .unwrap();

    // A RelayState that leaves the site is kept as the home page.
    let outside = login("//evil.example/x").await;
    let url =
        url::Url::parse(outside.headers().get("location").unwrap().to_str().unwrap()).unwrap();
    let id = url
        .query_pairs()
        .find(|(k, _)| k == "RelayState")
        .unwrap()
        .1
        .into_owned();
    let path: String = saml_requests::table
        .find(&id)
        .select(saml_requests::relay_path)
        .first(&mut *conn)
        .unwrap();
    assert_eq!(path, "/");
    let expired: i64 = saml_requests::table
        .filter(saml_requests::id.eq(&expired_id))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    assert_eq!(expired, 0, "the expired request is gone");

    let mut unknown = browser
        .get(app.url("/saml/nope/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let _ = unknown.body().await;
}
