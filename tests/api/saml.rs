//! The assertion consumer against the checks and attacks of SAML-CHECKS.md: each refusing test
//! alters one thing of a response the test IdP made valid, and names the reason it expects.

use chrono::{TimeDelta, Utc};
use idgate::saml::response::{self, Expected, Reason};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use samael::crypto::CertificateDer;

use crate::saml_idp::{Encryption, Login, RSA_SHA1, Signed, TestIdp, encode, self_signed};

const BASE: &str = "https://idgate.example";
const IDP_ENTITY: &str = "http://www.okta.com/exk1test";

struct Fixture {
    idp: TestIdp,
    certificates: Vec<CertificateDer>,
    sp_key: PKey<Private>,
    sp_certificate: openssl::x509::X509,
}

fn fixture() -> Fixture {
    let idp = TestIdp::new(IDP_ENTITY);
    let certificates = vec![CertificateDer::from(idp.certificate_der())];
    let sp_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let sp_certificate = self_signed(&sp_key, "sp-encryption", 30);
    Fixture {
        idp,
        certificates,
        sp_key,
        sp_certificate,
    }
}

impl Fixture {
    fn login(&self) -> Login {
        Login::new(BASE, "acme", "ada@example.com")
    }

    fn expected(&self) -> Expected<'_> {
        Expected {
            idp_entity_id: IDP_ENTITY,
            certificates: &self.certificates,
            acs_url: "https://idgate.example/saml/acme/acs",
            sp_entity_id: "https://idgate.example/saml/acme/metadata",
            clock_skew: TimeDelta::seconds(120),
            require_signed_response: false,
            require_signed_assertion: false,
            decryption_key: Some(&self.sp_key),
            now: Utc::now(),
        }
    }

    fn check(&self, encoded: &str) -> Result<response::Verified, Reason> {
        response::validate(encoded, &self.expected()).map_err(|r| r.reason)
    }
}

#[test]
fn signed_responses_and_assertions_are_accepted() {
    let f = fixture();
    for signed in [Signed::Response, Signed::Assertion, Signed::Both] {
        let login = f.login().attribute("groups", &["Engineering", "Admins"]);
        let verified = f
            .check(&f.idp.response(&login, signed))
            .unwrap_or_else(|r| panic!("{signed:?} refused: {r:?}"));
        assert_eq!(verified.name_id, "ada@example.com");
        assert_eq!(verified.assertion_id, login.assertion_id);
        assert_eq!(verified.attributes["groups"], ["Engineering", "Admins"]);
        assert_eq!(verified.in_response_to, None);
    }
}

#[test]
fn encrypted_assertions_are_decrypted_with_every_offered_cipher() {
    let f = fixture();
    for encryption in [
        Encryption::Aes128Gcm,
        Encryption::Aes256Gcm,
        Encryption::Aes128Cbc,
        Encryption::Aes256Cbc,
    ] {
        for signed in [Signed::Response, Signed::Assertion, Signed::Both] {
            let login = f.login();
            let encoded = f
                .idp
                .encrypted_response(&login, signed, &f.sp_certificate, encryption);
            let verified = f
                .check(&encoded)
                .unwrap_or_else(|r| panic!("{encryption:?} {signed:?} refused: {r:?}"));
            assert_eq!(verified.name_id, "ada@example.com");
        }
    }
}

#[test]
fn entra_shaped_responses_without_prefixes_are_accepted() {
    let f = fixture();
    let claims = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
    for signed in [Signed::Assertion, Signed::Response, Signed::Both] {
        let login = Login::entra(BASE, "acme", "ada@example.com");
        let xml = f.idp.response_xml(&login, signed);
        assert!(xml.starts_with("<Response xmlns=\"urn:oasis:names:tc:SAML:2.0:protocol\""));
        assert!(xml.contains("<Assertion xmlns=\"urn:oasis:names:tc:SAML:2.0:assertion\""));
        let verified = f
            .check(&encode(&xml))
            .unwrap_or_else(|r| panic!("{signed:?} refused: {r:?}"));
        assert_eq!(verified.name_id, "3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        assert_eq!(
            verified.attributes[&format!("{claims}/emailaddress")],
            ["ada@example.com"]
        );
    }
    let login = Login::entra(BASE, "acme", "ada@example.com");
    let encoded = f.idp.encrypted_response(
        &login,
        Signed::Assertion,
        &f.sp_certificate,
        Encryption::Aes256Cbc,
    );
    assert!(f.check(&encoded).is_ok());
}

#[test]
fn an_encrypted_assertion_may_rely_on_the_responses_namespace_declarations() {
    let f = fixture();
    let login = f.login();
    let bare = f.idp.assertion(&login).replacen(
        r#" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
        "",
        1,
    );
    let encrypted = crate::saml_idp::encrypt(&bare, &f.sp_certificate, Encryption::Aes128Gcm);
    let response = f.idp.envelope(&login, &encrypted);
    let signed = f.idp.sign(&response, &login.response_id, login.algorithms);
    let verified = f.check(&encode(&signed)).expect("accepted");
    assert_eq!(verified.name_id, "ada@example.com");
}

/// Signs the test IdP's assertion after `alter` changed it, inside an unsigned Response.
fn with_signed_assertion(f: &Fixture, login: &Login, alter: impl Fn(String) -> String) -> String {
    let assertion = alter(f.idp.assertion(login));
    let signed = f
        .idp
        .sign(&assertion, &login.assertion_id, login.algorithms);
    encode(&f.idp.envelope(login, &signed))
}

/// A valid response's XML after `alter` changed it (after signing, so signatures may break).
fn tampered(
    f: &Fixture,
    login: &Login,
    signed: Signed,
    alter: impl Fn(String) -> String,
) -> String {
    encode(&alter(f.idp.response_xml(login, signed)))
}

fn replace_once(xml: String, from: &str, to: &str) -> String {
    assert!(xml.contains(from), "{from:?} is in the response");
    xml.replacen(from, to, 1)
}

/// The signed `<saml:Assertion ...>...</saml:Assertion>` of a response.
fn assertion_of(xml: &str) -> &str {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.rfind("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    &xml[start..end]
}

macro_rules! refusals {
    ($($name:ident: $reason:ident, |$f:ident, $login:ident| $make:expr;)*) => {$(
        #[test]
        fn $name() {
            let $f = fixture();
            #[allow(unused_mut, unused_variables)]
            let mut $login = $f.login();
            let encoded: String = $make;
            assert_eq!($f.check(&encoded).err(), Some(Reason::$reason));
        }
    )*};
}

refusals! {
    an_unsigned_response_is_refused: Unsigned, |f, login| f.idp.response(&login, Signed::Neither);
    a_response_signed_by_another_key_is_refused: BadSignature, |f, login| {
        TestIdp::new(IDP_ENTITY).response(&login, Signed::Both)
    };
    a_certificate_in_key_info_is_not_trusted: BadSignature, |f, login| {
        let attacker = TestIdp::new(IDP_ENTITY);
        let certificate = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            attacker.certificate_der(),
        );
        encode(&attacker.response_xml(&login, Signed::Response).replacen(
            "</ds:SignatureValue>",
            &format!("</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"),
            1,
        ))
    };
    a_sha1_signature_is_refused: SignatureAlgorithm, |f, login| {
        login.algorithms = RSA_SHA1;
        f.idp.response(&login, Signed::Response)
    };
    an_hmac_signature_method_is_refused: SignatureAlgorithm, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| replace_once(
            xml,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
        ))
    };
    a_changed_signed_value_breaks_the_signature: BadSignature, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| replace_once(xml, ">ada@example.com<", ">eve@example.com<"))
    };
    a_wrong_audience_is_refused: Audience, |f, login| {
        login.audience = "https://other.example/saml/acme/metadata".to_owned();
        f.idp.response(&login, Signed::Both)
    };
    a_missing_audience_is_refused: Audience, |f, login| {
        let audience = format!("<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>", login.audience);
        with_signed_assertion(&f, &login, |xml| replace_once(xml, &audience, ""))
    };
    a_wrong_recipient_is_refused: Recipient, |f, login| {
        login.recipient = "https://idgate.example/saml/other/acs".to_owned();
        f.idp.response(&login, Signed::Both)
    };
    a_wrong_destination_is_refused: Destination, |f, login| {
        login.destination = Some("https://idgate.example/saml/other/acs".to_owned());
        f.idp.response(&login, Signed::Both)
    };
    an_unsigned_envelope_with_a_wrong_destination_is_refused: Destination, |f, login| {
        login.destination = Some("https://evil.example/acs".to_owned());
        f.idp.response(&login, Signed::Assertion)
    };
    a_signed_response_without_destination_is_refused: Destination, |f, login| {
        login.destination = None;
        f.idp.response(&login, Signed::Response)
    };
    another_idps_issuer_is_refused: Issuer, |f, login| {
        login.issuer = Some("http://www.okta.com/exkOTHER".to_owned());
        f.idp.response(&login, Signed::Both)
    };
    an_assertion_from_another_idp_in_our_idps_response_is_refused: Issuer, |f, login| {
        let mut foreign = login.clone();
        foreign.issuer = Some("http://www.okta.com/exkOTHER".to_owned());
        let assertion = f.idp.assertion(&foreign);
        let response = f.idp.envelope(&login, &assertion);
        encode(&f.idp.sign(&response, &login.response_id, login.algorithms))
    };
    an_expired_assertion_is_refused: Expired, |f, login| {
        login.issued = Utc::now() - TimeDelta::minutes(30);
        f.idp.response(&login, Signed::Both)
    };
    an_assertion_from_the_future_is_refused: IssuedInFuture, |f, login| {
        login.issued = Utc::now() + TimeDelta::minutes(30);
        f.idp.response(&login, Signed::Both)
    };
    an_ended_idp_session_is_refused: Expired, |f, login| {
        login.session_not_on_or_after = Some(Utc::now() - TimeDelta::minutes(10));
        f.idp.response(&login, Signed::Both)
    };
    a_failure_status_is_refused: Status, |f, login| {
        login.status = "urn:oasis:names:tc:SAML:2.0:status:Requester".to_owned();
        f.idp.response(&login, Signed::Both)
    };
    a_non_bearer_confirmation_is_refused: SubjectConfirmation, |f, login| {
        with_signed_assertion(&f, &login, |xml| replace_once(
            xml,
            "urn:oasis:names:tc:SAML:2.0:cm:bearer",
            "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key",
        ))
    };
    a_confirmation_without_expiry_is_refused: SubjectConfirmation, |f, login| {
        let expiry = format!(" NotOnOrAfter=\"{}\" Recipient", (login.issued + login.lifetime).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        with_signed_assertion(&f, &login, |xml| replace_once(xml, &expiry, " Recipient"))
    };
    mismatched_in_response_to_is_refused: InResponseTo, |f, login| {
        login.in_response_to = Some("_request-one".to_owned());
        let assertion = f.idp.sign(&f.idp.assertion(&login), &login.assertion_id, login.algorithms);
        login.in_response_to = Some("_request-two".to_owned());
        encode(&f.idp.envelope(&login, &assertion))
    };
    a_doctype_is_refused: Doctype, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| format!("<!DOCTYPE samlp:Response [<!ENTITY e \"x\">]>{xml}"))
    };
    an_oversized_response_is_refused: TooLarge, |f, login| {
        let padding = "a".repeat(response::MAX_RESPONSE_BYTES);
        tampered(&f, &login, Signed::Response, |xml| replace_once(xml, "</samlp:Response>", &format!("<x>{padding}</x></samlp:Response>")))
    };
    a_response_that_is_not_base64_is_refused: NotBase64, |f, login| "not base64 at all!".to_owned();
    a_response_that_is_not_xml_is_refused: Malformed, |f, login| encode("<samlp:Response>");
    a_document_that_is_not_a_response_is_refused: NotAResponse, |f, login| {
        let xml = f.idp.response_xml(&login, Signed::Assertion);
        encode(assertion_of(&xml))
    };
    comment_injection_in_the_name_id_is_refused: Comment, |f, login| {
        with_signed_assertion(&f, &login, |xml| replace_once(xml, ">ada@example.com</saml:NameID>", ">ada@example.com<!---->.evil.example</saml:NameID>"))
    };
    a_comment_in_the_digest_value_is_refused: Comment, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| replace_once(xml, "<ds:DigestValue>", "<ds:DigestValue><!-- x -->"))
    };
    duplicate_ids_are_refused: DuplicateId, |f, login| {
        login.response_id = login.assertion_id.clone();
        f.idp.response(&login, Signed::Assertion)
    };
    an_unsigned_evil_assertion_beside_a_signed_one_is_refused: AssertionCount, |f, login| {
        let mut evil = login.clone();
        evil.name_id = "eve@example.com".to_owned();
        evil.assertion_id = "_evil".to_owned();
        let evil_assertion = f.idp.assertion(&evil);
        tampered(&f, &login, Signed::Assertion, |xml| replace_once(xml, "<saml:Assertion", &format!("{evil_assertion}<saml:Assertion")))
    };
    a_signed_assertion_hidden_inside_an_evil_one_is_refused: AssertionCount, |f, login| {
        let xml = f.idp.response_xml(&login, Signed::Assertion);
        let signed = assertion_of(&xml).to_owned();
        let mut evil = login.clone();
        evil.name_id = "eve@example.com".to_owned();
        evil.assertion_id = "_evil".to_owned();
        let evil_assertion = f.idp.assertion(&evil).replacen("</saml:Issuer>", &format!("</saml:Issuer><saml:Advice>{signed}</saml:Advice>"), 1);
        encode(&xml.replacen(&signed, &evil_assertion, 1))
    };
    a_signed_response_wrapped_in_an_evil_one_is_refused: AssertionCount, |f, login| {
        let signed = f.idp.response_xml(&login, Signed::Response);
        let mut evil = login.clone();
        evil.name_id = "eve@example.com".to_owned();
        evil.assertion_id = "_evil".to_owned();
        evil.response_id = "_evil_response".to_owned();
        let evil_response = f.idp.envelope(&evil, &f.idp.assertion(&evil));
        encode(&evil_response.replacen("</saml:Issuer>", &format!("</saml:Issuer><samlp:Extensions>{signed}</samlp:Extensions>"), 1))
    };
    several_signed_assertions_in_an_unsigned_response_are_refused: AssertionCount, |f, login| {
        let first = f.idp.sign(&f.idp.assertion(&login), &login.assertion_id, login.algorithms);
        let mut second = login.clone();
        second.assertion_id = "_second".to_owned();
        second.name_id = "eve@example.com".to_owned();
        let second = f.idp.sign(&f.idp.assertion(&second), "_second", login.algorithms);
        encode(&f.idp.envelope(&login, &format!("{first}{second}")))
    };
    a_signature_with_two_references_is_refused: SignatureShape, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| {
            let start = xml.find("<ds:Reference").unwrap();
            let end = xml.find("</ds:Reference>").unwrap() + "</ds:Reference>".len();
            let reference = xml[start..end].to_owned();
            replace_once(xml.clone(), &reference, &format!("{reference}{}", reference.replacen(&format!("#{}", login.response_id), &format!("#{}", login.assertion_id), 1)))
        })
    };
    a_signature_over_another_element_is_refused: SignatureShape, |f, login| {
        // The Response carries a signature whose reference is the assertion.
        let response = f.idp.envelope(&login, &f.idp.assertion(&login));
        encode(&f.idp.sign(&response, &login.assertion_id, login.algorithms))
    };
    a_second_signature_on_one_element_is_refused: SignatureShape, |f, login| {
        tampered(&f, &login, Signed::Response, |xml| {
            let start = xml.find("<ds:Signature").unwrap();
            let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
            let signature = xml[start..end].to_owned();
            replace_once(xml.clone(), &signature, &format!("{signature}{signature}"))
        })
    };
    an_encrypted_assertion_in_an_unsigned_response_is_refused: Unsigned, |f, login| {
        f.idp.encrypted_response(&login, Signed::Neither, &f.sp_certificate, Encryption::Aes256Gcm)
    };
    an_assertion_encrypted_to_another_key_is_refused: Decryption, |f, login| {
        let other = self_signed(&PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), "other", 30);
        f.idp.encrypted_response(&login, Signed::Response, &other, Encryption::Aes128Gcm)
    };
}

#[test]
fn elements_in_a_foreign_namespace_are_never_read_as_saml() {
    let f = fixture();
    let login = f.login();
    let decoy = r#"<evil:Assertion xmlns:evil="urn:evil" ID="_decoy"><evil:Subject><evil:NameID>eve@example.com</evil:NameID></evil:Subject></evil:Assertion>"#;
    let xml = f.idp.response_xml(&login, Signed::Assertion);
    let encoded = encode(&xml.replacen("<saml:Assertion", &format!("{decoy}<saml:Assertion"), 1));
    if let Ok(verified) = f.check(&encoded) {
        assert_eq!(verified.name_id, "ada@example.com");
    }
}

#[test]
fn signature_policies_of_the_connection_are_enforced() {
    let f = fixture();
    let login = f.login();
    let mut expected = f.expected();
    expected.require_signed_response = true;
    let refused = response::validate(&f.idp.response(&login, Signed::Assertion), &expected);
    assert_eq!(refused.unwrap_err().reason, Reason::SignaturePolicy);
    assert!(response::validate(&f.idp.response(&login, Signed::Response), &expected).is_ok());

    let mut expected = f.expected();
    expected.require_signed_assertion = true;
    let refused = response::validate(&f.idp.response(&login, Signed::Response), &expected);
    assert_eq!(refused.unwrap_err().reason, Reason::SignaturePolicy);
    assert!(response::validate(&f.idp.response(&login, Signed::Assertion), &expected).is_ok());
}

#[test]
fn a_connection_without_usable_certificates_refuses_everything() {
    let f = fixture();
    let mut expected = f.expected();
    expected.certificates = &[];
    let refused = response::validate(&f.idp.response(&f.login(), Signed::Both), &expected);
    assert_eq!(refused.unwrap_err().reason, Reason::NoUsableCertificate);
}

#[test]
fn a_certificate_rollover_accepts_either_key() {
    let f = fixture();
    let next = TestIdp::new(IDP_ENTITY);
    let both = vec![
        CertificateDer::from(next.certificate_der()),
        f.certificates[0].clone(),
    ];
    let mut expected = f.expected();
    expected.certificates = &both;
    for idp in [&f.idp, &next] {
        assert!(response::validate(&idp.response(&f.login(), Signed::Both), &expected).is_ok());
    }
}
