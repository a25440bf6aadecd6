//! Validating one SAML response, as the ACS does before it touches the database: a Response
//! signed with RSA-2048 (RSA-SHA256), by the test IdP of the integration tests. Target: median at
//! most 1 ms in a release build (`cargo bench --bench acs`).

use chrono::{TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use idgate::saml::response::{Expected, validate};
use samael::crypto::CertificateDer;

#[path = "../tests/api/saml_idp.rs"]
mod saml_idp;

use saml_idp::{Login, Signed, TestIdp};

fn responses(criterion: &mut Criterion) {
    let idp = TestIdp::new("http://www.okta.com/exk1bench");
    let certificates = vec![CertificateDer::from(idp.certificate_der())];
    let login = Login::new("https://idgate.example", "acme", "ada@example.com")
        .attribute("groups", &["Engineering", "Admins"]);
    let expected = Expected {
        idp_entity_id: &idp.entity_id,
        certificates: &certificates,
        acs_url: "https://idgate.example/saml/acme/acs",
        sp_entity_id: "https://idgate.example/saml/acme/metadata",
        clock_skew: TimeDelta::seconds(120),
        require_signed_response: false,
        require_signed_assertion: false,
        decryption_key: None,
        now: Utc::now(),
    };
    for (name, signed) in [
        ("signed response", Signed::Response),
        ("signed assertion", Signed::Assertion),
        ("both signed", Signed::Both),
    ] {
        let encoded = idp.response(&login, signed);
        assert!(validate(&encoded, &expected).is_ok(), "{name} validates");
        criterion.bench_function(
            &format!("validate {name} ({} bytes)", encoded.len() * 3 / 4),
            |b| b.iter(|| validate(&encoded, &expected).expect("valid")),
        );
    }
}

criterion_group!(benches, responses);
criterion_main!(benches);
