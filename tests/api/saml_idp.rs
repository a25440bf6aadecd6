//! A SAML identity provider for tests: its own RSA key and certificate made for the run, responses
//! built as Okta and Entra shape them, signed with libxmlsec1 (through samael) and encrypted with
//! openssl to the SP's encryption certificate. Attack tests start from its output and alter it.

#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use openssl::asn1::Asn1Time;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::{X509, X509NameBuilder};
use samael::crypto::{Crypto, CryptoProvider};

pub const RSA_SHA256: (&str, &str) = (
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmlenc#sha256",
);
pub const RSA_SHA1: (&str, &str) = (
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "http://www.w3.org/2000/09/xmldsig#sha1",
);

pub struct TestIdp {
    pub entity_id: String,
    key: PKey<Private>,
    pub certificate: X509,
}

/// Which parts carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    Response,
    Assertion,
    Both,
    Neither,
}

/// Content encryption for an encrypted assertion.
#[derive(Debug, Clone, Copy)]
pub enum Encryption {
    Aes128Gcm,
    Aes256Gcm,
    Aes128Cbc,
    Aes256Cbc,
}

impl Encryption {
    fn cipher(self) -> (Cipher, &'static str, bool) {
        match self {
            Encryption::Aes128Gcm => (
                Cipher::aes_128_gcm(),
                "http://www.w3.org/2009/xmlenc11#aes128-gcm",
                true,
            ),
            Encryption::Aes256Gcm => (
                Cipher::aes_256_gcm(),
                "http://www.w3.org/2009/xmlenc11#aes256-gcm",
                true,
            ),
            Encryption::Aes128Cbc => (
                Cipher::aes_128_cbc(),
                "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
                false,
            ),
            Encryption::Aes256Cbc => (
                Cipher::aes_256_cbc(),
                "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
                false,
            ),
        }
    }
}

/// What a response says. `Login::new` fills in what a real IdP sends for a fresh login.
#[derive(Debug, Clone)]
pub struct Login {
    pub acs: String,
    pub audience: String,
    pub destination: Option<String>,
    pub recipient: String,
    pub issuer: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub attributes: Vec<(String, Vec<String>)>,
    pub in_response_to: Option<String>,
    pub issued: DateTime<Utc>,
    pub lifetime: TimeDelta,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
    pub status: String,
    pub response_id: String,
    pub assertion_id: String,
    pub algorithms: (&'static str, &'static str),
    /// Entra ID's shape: default namespaces instead of `samlp:` and `saml:` prefixes.
    pub unprefixed: bool,
}

fn random_id() -> String {
    format!("_{}", uuid::Uuid::new_v4().simple())
}

impl Login {
    /// A login of `email` to the workspace whose SP is at `base/saml/{slug}`.
    pub fn new(base: &str, slug: &str, email: &str) -> Login {
        let acs = format!("{base}/saml/{slug}/acs");
        Login {
            destination: Some(acs.clone()),
            recipient: acs.clone(),
            acs,
            audience: format!("{base}/saml/{slug}/metadata"),
            issuer: None,
            name_id: email.to_owned(),
            name_id_format: "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_owned(),
            attributes: vec![("email".to_owned(), vec![email.to_owned()])],
            in_response_to: None,
            issued: Utc::now(),
            lifetime: TimeDelta::minutes(5),
            session_not_on_or_after: None,
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".to_owned(),
            response_id: random_id(),
            assertion_id: random_id(),
            algorithms: RSA_SHA256,
            unprefixed: false,
        }
    }

    /// A login as Entra ID sends it: unprefixed elements, claims-URI attribute names.
    pub fn entra(base: &str, slug: &str, email: &str) -> Login {
        let claims = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";
        let mut login = Login::new(base, slug, email);
        login.unprefixed = true;
        login.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".to_owned();
        login.name_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301".to_owned();
        login.attributes = vec![(format!("{claims}/emailaddress"), vec![email.to_owned()])];
        login
    }

    pub fn attribute(mut self, name: &str, values: &[&str]) -> Login {
        self.attributes.push((
            name.to_owned(),
            values.iter().map(|v| v.to_string()).collect(),
        ));
        self
    }
}

fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A signature template for the element with `id`, filled in by libxmlsec1.
fn signature_template(id: &str, (signature, digest): (&str, &str)) -> String {
    format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{signature}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue></ds:Signature>"##
    )
}

/// A certificate for `key`, issued by itself, valid from now for `days`.
pub fn self_signed<T: openssl::pkey::HasPrivate>(
    key: &PKey<T>,
    common_name: &str,
    days: u32,
) -> X509 {
    let from = Asn1Time::days_from_now(0).unwrap();
    let until = Asn1Time::days_from_now(days).unwrap();
    self_signed_between(key, common_name, &from, &until)
}

/// A certificate for `key`, issued by itself, valid between two times.
pub fn self_signed_between<T: openssl::pkey::HasPrivate>(
    key: &PKey<T>,
    common_name: &str,
    not_before: &openssl::asn1::Asn1TimeRef,
    not_after: &openssl::asn1::Asn1TimeRef,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", common_name).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(key).unwrap();
    builder.set_not_before(not_before).unwrap();
    builder.set_not_after(not_after).unwrap();
    builder.sign(key, MessageDigest::sha256()).unwrap();
    builder.build()
}

pub fn encode(xml: &str) -> String {
    STANDARD.encode(xml)
}

impl TestIdp {
    pub fn new(entity_id: &str) -> TestIdp {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        TestIdp {
            entity_id: entity_id.to_owned(),
            certificate: self_signed(&key, "test-idp", 365),
            key,
        }
    }

    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    /// An IdP's LogoutRequest for `name_id` to the SP's single-logout URL.
    pub fn logout_request(&self, slo: &str, name_id: &str, session_index: Option<&str>) -> String {
        let index = session_index
            .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(i)))
            .unwrap_or_default();
        format!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{slo}"><saml:Issuer>{issuer}</saml:Issuer><saml:NameID>{name_id}</saml:NameID>{index}</samlp:LogoutRequest>"#,
            id = random_id(),
            now = instant(Utc::now()),
            slo = escape(slo),
            issuer = escape(&self.entity_id),
            name_id = escape(name_id),
        )
    }

    pub fn certificate_pem(&self) -> String {
        String::from_utf8(self.certificate.to_pem().unwrap()).unwrap()
    }

    pub fn certificate_der(&self) -> Vec<u8> {
        self.certificate.to_der().unwrap()
    }

    /// Signs the element whose Issuer closes first in `xml` (the root's), as the IdP would.
    pub fn sign(&self, xml: &str, id: &str, algorithms: (&str, &str)) -> String {
        let end = ["</saml:Issuer>", "</Issuer>"]
            .iter()
            .filter_map(|close| xml.find(close).map(|at| at + close.len()))
            .min()
            .expect("an Issuer");
        let templated = format!(
            "{}{}{}",
            &xml[..end],
            signature_template(id, algorithms),
            &xml[end..]
        );
        let signed =
            Crypto::sign_xml(templated, &self.key.private_key_to_der().unwrap()).expect("signs");
        // Drop the XML declaration libxml2 writes, so the result can be embedded.
        match signed.strip_prefix("<?xml") {
            Some(rest) => rest[rest.find("?>").expect("a declaration ends") + 2..]
                .trim()
                .to_owned(),
            None => signed,
        }
    }

    /// The assertion alone, with every namespace it uses declared on it.
    pub fn assertion(&self, login: &Login) -> String {
        let issuer = login.issuer.as_deref().unwrap_or(&self.entity_id);
        let not_on_or_after = instant(login.issued + login.lifetime);
        let in_response_to = login
            .in_response_to
            .as_deref()
            .map(|id| format!(r#" InResponseTo="{}""#, escape(id)))
            .unwrap_or_default();
        let session_limit = login
            .session_not_on_or_after
            .map(|t| format!(r#" SessionNotOnOrAfter="{}""#, instant(t)))
            .unwrap_or_default();
        let attributes: String = login
            .attributes
            .iter()
            .map(|(name, values)| {
                let values: String = values
                    .iter()
                    .map(|v| {
                        format!(
                            r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
                            escape(v)
                        )
                    })
                    .collect();
                format!(
                    r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified">{values}</saml:Attribute>"#,
                    escape(name)
                )
            })
            .collect();
        let assertion = format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{id}" IssueInstant="{issued}" Version="2.0"><saml:Issuer>{issuer}</saml:Issuer><saml:Subject><saml:NameID Format="{format}">{name_id}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData{in_response_to} NotOnOrAfter="{not_on_or_after}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{issued}" NotOnOrAfter="{not_on_or_after}"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="{id}"{session_limit}><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement>{attributes}</saml:AttributeStatement></saml:Assertion>"#,
            id = login.assertion_id,
            issued = instant(login.issued),
            issuer = escape(issuer),
            format = escape(&login.name_id_format),
            name_id = escape(&login.name_id),
            recipient = escape(&login.recipient),
            audience = escape(&login.audience),
        );
        if login.unprefixed {
            assertion
                .replace("<saml:", "<")
                .replace("</saml:", "</")
                .replace("xmlns:saml=", "xmlns=")
        } else {
            assertion
        }
    }

    /// A Response around `inner` (an Assertion or EncryptedAssertion), unsigned.
    pub fn envelope(&self, login: &Login, inner: &str) -> String {
        let issuer = login.issuer.as_deref().unwrap_or(&self.entity_id);
        let destination = login
            .destination
            .as_deref()
            .map(|d| format!(r#" Destination="{}""#, escape(d)))
            .unwrap_or_default();
        let in_response_to = login
            .in_response_to
            .as_deref()
            .map(|id| format!(r#" InResponseTo="{}""#, escape(id)))
            .unwrap_or_default();
        let response = format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}"{destination}{in_response_to}><saml:Issuer>{issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="{status}"/></samlp:Status>{inner}</samlp:Response>"#,
            id = login.response_id,
            issued = instant(login.issued),
            issuer = escape(issuer),
            status = escape(&login.status),
        );
        if login.unprefixed {
            // Only the envelope's own prefixes: `inner` is already in its final shape.
            let (head, rest) = response.split_at(response.find("</samlp:Status>").unwrap());
            let head = head
                .replace(
                    "<saml:Issuer>",
                    r#"<Issuer xmlns="urn:oasis:names:tc:SAML:2.0:assertion">"#,
                )
                .replace("</saml:Issuer>", "</Issuer>")
                .replace(r#" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#, "")
                .replace("samlp:", "")
                .replace("xmlns:samlp=", "xmlns=");
            format!(
                "{head}{}",
                rest.replacen("</samlp:Status>", "</Status>", 1)
                    .replace("</samlp:Response>", "</Response>")
            )
        } else {
            response
        }
    }

    /// The response XML, signed where asked.
    pub fn response_xml(&self, login: &Login, signed: Signed) -> String {
        let mut assertion = self.assertion(login);
        if matches!(signed, Signed::Assertion | Signed::Both) {
            assertion = self.sign(&assertion, &login.assertion_id, login.algorithms);
        }
        self.finish(login, &assertion, signed)
    }

    fn finish(&self, login: &Login, inner: &str, signed: Signed) -> String {
        let response = self.envelope(login, inner);
        if matches!(signed, Signed::Response | Signed::Both) {
            self.sign(&response, &login.response_id, login.algorithms)
        } else {
            response
        }
    }

    /// The form value of a response signed where asked.
    pub fn response(&self, login: &Login, signed: Signed) -> String {
        encode(&self.response_xml(login, signed))
    }

    /// A response whose assertion (signed itself when `signed` says so) is encrypted to the SP's
    /// certificate.
    pub fn encrypted_response(
        &self,
        login: &Login,
        signed: Signed,
        sp_encryption_certificate: &X509,
        encryption: Encryption,
    ) -> String {
        let mut assertion = self.assertion(login);
        if matches!(signed, Signed::Assertion | Signed::Both) {
            assertion = self.sign(&assertion, &login.assertion_id, login.algorithms);
        }
        let mut encrypted = encrypt(&assertion, sp_encryption_certificate, encryption);
        if login.unprefixed {
            encrypted = encrypted
                .replace(
                    "<saml:EncryptedAssertion>",
                    r#"<EncryptedAssertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion">"#,
                )
                .replace("</saml:EncryptedAssertion>", "</EncryptedAssertion>");
        }
        encode(&self.finish(login, &encrypted, signed))
    }
}

/// An EncryptedAssertion: the content key by RSA-OAEP (MGF1-SHA1) to `certificate`.
pub fn encrypt(assertion: &str, certificate: &X509, encryption: Encryption) -> String {
    let (cipher, algorithm, gcm) = encryption.cipher();
    let mut key = vec![0; cipher.key_len()];
    openssl::rand::rand_bytes(&mut key).unwrap();
    let mut iv = vec![0; if gcm { 12 } else { 16 }];
    openssl::rand::rand_bytes(&mut iv).unwrap();
    let mut crypter = Crypter::new(cipher, Mode::Encrypt, &key, Some(&iv)).unwrap();
    let mut body = vec![0; assertion.len() + 32];
    let mut length = crypter.update(assertion.as_bytes(), &mut body).unwrap();
    length += crypter.finalize(&mut body[length..]).unwrap();
    body.truncate(length);
    let mut content = iv;
    content.extend(body);
    if gcm {
        let mut tag = [0; 16];
        crypter.get_tag(&mut tag).unwrap();
        content.extend(tag);
    }
    let public = certificate.public_key().unwrap();
    let mut encrypter = Encrypter::new(&public).unwrap();
    encrypter.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
    let mut wrapped = vec![0; encrypter.encrypt_len(&key).unwrap()];
    let length = encrypter.encrypt(&key, &mut wrapped).unwrap();
    wrapped.truncate(length);
    format!(
        r#"<saml:EncryptedAssertion><xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element"><xenc:EncryptionMethod Algorithm="{algorithm}"/><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"><ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/></xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo><xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>"#,
        STANDARD.encode(wrapped),
        STANDARD.encode(content)
    )
}
