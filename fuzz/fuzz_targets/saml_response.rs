//! The SAML response entry point of the assertion consumer: the input is the XML a browser would
//! post (base64-encoded here, as the form field carries it). It may be refused for any reason,
//! never panic; nothing unsigned by the connection's certificate may pass.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeDelta, Utc};
use idgate::saml::response::{Expected, validate};
use libfuzzer_sys::fuzz_target;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use samael::crypto::CertificateDer;

/// A certificate whose key nobody keeps: no input can carry a valid signature by it.
fn certificate() -> &'static CertificateDer {
    static CERTIFICATE: OnceLock<CertificateDer> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "fuzz idp").unwrap();
        let name = name.build();
        let mut builder = X509::builder().unwrap();
        builder.set_version(2).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        CertificateDer::from(builder.build().to_der().unwrap())
    })
}

fuzz_target!(|xml: &[u8]| {
    let certificates = [certificate().clone()];
    let expected = Expected {
        idp_entity_id: "http://www.okta.com/exkfuzz",
        certificates: &certificates,
        acs_url: "https://idgate.example/saml/acme/acs",
        sp_entity_id: "https://idgate.example/saml/acme/metadata",
        clock_skew: TimeDelta::seconds(120),
        require_signed_response: false,
        require_signed_assertion: false,
        decryption_key: None,
        now: Utc::now(),
    };
    assert!(validate(&STANDARD.encode(xml), &expected).is_err());
});
