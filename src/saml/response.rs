//! The assertion consumer's checks on one SAML response (`../shared/design/SAML-CHECKS.md`).
//!
//! samael verifies signatures (libxmlsec1, against the connection's certificates only) and reduces
//! the document to what they cover; everything around that is done here, because samael 0.0.22
//! leaves it open: the shape of the document and of each signature is checked first on a strict
//! parse, a signature by a configured certificate must cover the assertion, the algorithms are an
//! allow-list, audience and recipient are required, and encrypted assertions are decrypted here
//! with openssl (RSA-OAEP; AES-GCM and -CBC) so that an unsigned response can only carry an
//! assertion that is signed itself. Every value read afterwards comes from the signed content.
//!
//! What needs the database (InResponseTo against issued requests, the replay cache) is the
//! caller's, with the values this returns.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use libxml::parser::{Parser, ParserOptions};
use libxml::tree::{Document, Node, NodeType};
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::schema::{Assertion, Response};

/// The decoded XML a response may have; real ones are a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// An assertion issued longer ago than this is stale, whatever its conditions say.
pub(super) const MAX_ASSERTION_AGE: TimeDelta = TimeDelta::minutes(10);

pub(crate) const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
pub(crate) const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

const SIGNATURE_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];
const CANONICALIZATIONS: [&str; 3] = [
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Why a response was refused: the code goes to the audit log, the browser sees only a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    NotBase64,
    Malformed,
    Doctype,
    Comment,
    NotAResponse,
    AssertionCount,
    DuplicateId,
    Unsigned,
    SignaturePolicy,
    SignatureShape,
    SignatureAlgorithm,
    BadSignature,
    Decryption,
    Status,
    Issuer,
    Destination,
    Recipient,
    Audience,
    SubjectConfirmation,
    NotYetValid,
    Expired,
    IssuedInFuture,
    InResponseTo,
    Unsolicited,
    RequestReused,
    BrowserMismatch,
    Replay,
    NoSubject,
    /// The email asserted is not an address.
    InvalidEmail,
    NoUsableCertificate,
    MetadataExpired,
    NotProvisioned,
    Deactivated,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::NotBase64 => "not_base64",
            Reason::Malformed => "malformed",
            Reason::Doctype => "doctype",
            Reason::Comment => "comment",
            Reason::NotAResponse => "not_a_response",
            Reason::AssertionCount => "assertion_count",
            Reason::DuplicateId => "duplicate_id",
            Reason::Unsigned => "unsigned",
            Reason::SignaturePolicy => "signature_policy",
            Reason::SignatureShape => "signature_shape",
            Reason::SignatureAlgorithm => "signature_algorithm",
            Reason::BadSignature => "bad_signature",
            Reason::Decryption => "decryption",
            Reason::Status => "status",
            Reason::Issuer => "issuer",
            Reason::Destination => "destination",
            Reason::Recipient => "recipient",
            Reason::Audience => "audience",
            Reason::SubjectConfirmation => "subject_confirmation",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::InResponseTo => "in_response_to",
            Reason::Unsolicited => "unsolicited",
            Reason::RequestReused => "request_reused",
            Reason::BrowserMismatch => "browser_mismatch",
            Reason::Replay => "replay",
            Reason::NoSubject => "no_subject",
            Reason::NoUsableCertificate => "no_usable_certificate",
            Reason::MetadataExpired => "metadata_expired",
            Reason::NotProvisioned => "not_provisioned",
            Reason::Deactivated => "deactivated",
            Reason::InvalidEmail => "invalid_email",
        }
    }
}

/// A refused response: the reason and a detail for the audit log (never the response itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
    /// Whether the response's signature had checked out against the IdP's certificates: only
    /// then can the refusal be of anything the IdP sent, rather than of anyone's post.
    pub signature_verified: bool,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
            signature_verified: false,
        }
    }

    /// This refusal, made of a response whose signature had checked out.
    pub fn of_signed(self) -> Self {
        Refusal {
            signature_verified: true,
            ..self
        }
    }
}

fn refuse<T>(reason: Reason, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(reason, detail))
}

/// What a response must match: this workspace's connection and service provider.
pub struct Expected<'a> {
    pub idp_entity_id: &'a str,
    /// The connection's usable signing certificates (several during a rollover).
    pub certificates: &'a [CertificateDer],
    pub acs_url: &'a str,
    pub sp_entity_id: &'a str,
    pub clock_skew: TimeDelta,
    pub require_signed_response: bool,
    pub require_signed_assertion: bool,
    /// The SP's encryption key, for encrypted assertions.
    pub decryption_key: Option<&'a PKey<Private>>,
    pub now: DateTime<Utc>,
}

/// What a valid response vouches for, read from signed content only.
#[derive(Debug, Clone)]
pub struct Verified {
    pub assertion_id: String,
    /// The request this answers; None for an IdP-initiated response.
    pub in_response_to: Option<String>,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub session_not_on_or_after: Option<DateTime<Utc>>,
    /// Attribute values by attribute Name (and by FriendlyName, where it differs).
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Until when the assertion could be replayed, so how long the replay cache keeps it.
    pub valid_until: DateTime<Utc>,
}

/// Checks a base64 `SAMLResponse` form value.
pub fn validate(encoded: &str, expected: &Expected) -> Result<Verified, Refusal> {
    if expected.certificates.is_empty() {
        return refuse(
            Reason::NoUsableCertificate,
            "the connection has no unexpired signing certificate",
        );
    }
    let xml = decode(encoded)?;
    let document = parse_strict(&xml)?;
    let root = document
        .get_root_element()
        .ok_or_else(|| Refusal::new(Reason::Malformed, "no root element"))?;
    if !is(&root, PROTOCOL, "Response") {
        return refuse(
            Reason::NotAResponse,
            format!("the root element is {}", root.get_name()),
        );
    }
    let found = inspect(&root)?;
    let [carried] = found.assertions.as_slice() else {
        return refuse(
            Reason::AssertionCount,
            format!(
                "{} assertions; exactly one is accepted",
                found.assertions.len()
            ),
        );
    };
    if carried.get_parent().as_ref() != Some(&root) {
        return refuse(
            Reason::AssertionCount,
            "the assertion is not a child of the Response",
        );
    }
    let encrypted = is(carried, ASSERTION, "EncryptedAssertion");
    let mut response_signed = false;
    let mut assertion_signed = false;
    for (signature, parent) in &found.signatures {
        check_signature_shape(signature, parent)?;
        if parent == &root {
            response_signed = true;
        } else if parent == carried && !encrypted {
            assertion_signed = true;
        } else {
            return refuse(
                Reason::SignatureShape,
                "a signature outside the Response and its Assertion",
            );
        }
    }
    if expected.require_signed_response && !response_signed {
        return refuse(
            Reason::SignaturePolicy,
            "the connection requires a signed Response",
        );
    }

    // The envelope: what the Response itself says. Read from the signed copy when it is signed.
    let signed_xml = if response_signed || assertion_signed {
        Some(verify(&xml, expected.certificates)?)
    } else {
        None
    };
    let signature_verified = signed_xml.is_some();
    let mut after_signature = || -> Result<Verified, Refusal> {
        let envelope_xml = if response_signed {
            signed_xml.as_deref().expect("verified above")
        } else {
            xml.as_str()
        };
        // An encrypted assertion is read by `decrypt` below, never by samael: samael's schema wants
        // the `ds` prefix declared on the assertion's KeyInfo itself, where xmlsec1's template (as
        // pysaml2, Shibboleth and ADFS send it) declares it on the Response.
        let without_encrypted;
        let envelope_xml = if encrypted {
            without_encrypted = without_encrypted_assertion(envelope_xml)?;
            without_encrypted.as_str()
        } else {
            envelope_xml
        };
        let envelope: Response = envelope_xml.parse().map_err(|e| {
            Refusal::new(
                Reason::Malformed,
                format!("the Response does not parse: {e}"),
            )
        })?;
        check_envelope(&envelope, response_signed, expected)?;

        let assertion = if encrypted {
            // What is decrypted must come from the signed copy when the Response is signed.
            let signed_document;
            let encrypted_assertion = if response_signed {
                signed_document = parse_strict(signed_xml.as_deref().expect("verified above"))?;
                signed_document
                    .get_root_element()
                    .and_then(|r| child(&r, ASSERTION, "EncryptedAssertion"))
                    .ok_or_else(|| {
                        Refusal::new(
                            Reason::AssertionCount,
                            "the signed Response has no assertion",
                        )
                    })?
            } else {
                carried.clone()
            };
            let key = expected.decryption_key.ok_or_else(|| {
                Refusal::new(
                    Reason::Decryption,
                    "an encrypted assertion, and no SP key to decrypt it",
                )
            })?;
            let (inner, inner_signed) = decrypted_assertion(&encrypted_assertion, key, expected)?;
            if !response_signed && !inner_signed {
                return refuse(
                    Reason::Unsigned,
                    "an unsigned Response carrying an unsigned encrypted assertion",
                );
            }
            assertion_signed = inner_signed;
            inner
        } else if response_signed {
            envelope.assertion.clone().ok_or_else(|| {
                Refusal::new(Reason::AssertionCount, "the signed Response has none")
            })?
        } else if assertion_signed {
            parse_assertion(signed_xml.as_deref().expect("verified above"))?
        } else {
            return refuse(
                Reason::Unsigned,
                "neither the Response nor the assertion is signed",
            );
        };
        if expected.require_signed_assertion && !assertion_signed {
            return refuse(
                Reason::SignaturePolicy,
                "the connection requires a signed Assertion",
            );
        }
        check_assertion(&assertion, envelope.in_response_to.as_deref(), expected)
    };
    after_signature().map_err(|refusal| {
        if signature_verified {
            refusal.of_signed()
        } else {
            refusal
        }
    })
}

fn decode(encoded: &str) -> Result<String, Refusal> {
    // base64 grows by 4/3; IdPs that wrap lines add a little more.
    if encoded.len() > MAX_RESPONSE_BYTES / 3 * 4 + MAX_RESPONSE_BYTES / 32 {
        return refuse(Reason::TooLarge, format!("{} bytes encoded", encoded.len()));
    }
    let compact: Vec<u8> = encoded
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let bytes = STANDARD
        .decode(&compact)
        .map_err(|e| Refusal::new(Reason::NotBase64, e.to_string()))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return refuse(Reason::TooLarge, format!("{} bytes of XML", bytes.len()));
    }
    String::from_utf8(bytes).map_err(|_| Refusal::new(Reason::Malformed, "not UTF-8"))
}

/// Elements whose content is left out of a response kept for the sign-in debugger: signatures and
/// digests (noise to a reader, and material to replay), certificates (the connection lists them),
/// and encrypted content.
const REDACTED: [&str; 4] = [
    "SignatureValue",
    "DigestValue",
    "X509Certificate",
    "CipherValue",
];

/// A posted `SAMLResponse` as an admin may read it: decoded, with the contents of [`REDACTED`]
/// elements replaced. What does not decode or parse cleanly is described, never kept.
pub fn redacted(encoded: &str) -> String {
    let document = match decode(encoded).and_then(|xml| parse_strict(&xml)) {
        Ok(document) => document,
        Err(refusal) => return format!("(not shown: {})", refusal.detail),
    };
    let Some(root) = document.get_root_element() else {
        return "(not shown: no root element)".to_owned();
    };
    let mut pending = vec![root];
    while let Some(mut node) = pending.pop() {
        if REDACTED.contains(&node.get_name().as_str()) {
            let _ = node.set_content("[redacted]");
            continue;
        }
        pending.extend(node.get_child_elements());
    }
    document.node_to_string(&document.get_root_element().expect("read above"))
}

/// A strict parse (no recovery, no network): what cannot parse cleanly is refused, so the checks
/// here and libxmlsec1 see the same document.
pub(crate) fn parse_strict(xml: &str) -> Result<Document, Refusal> {
    // A DTD can declare entities and IDs that change what the signature covers.
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return refuse(Reason::Doctype, "a DOCTYPE or entity declaration");
    }
    let options = ParserOptions {
        recover: false,
        no_net: true,
        no_def_dtd: true,
        ..ParserOptions::default()
    };
    Parser::default()
        .parse_string_with_options(xml, options)
        .map_err(|e| Refusal::new(Reason::Malformed, format!("not well-formed XML: {e}")))
}

pub(crate) fn is(node: &Node, namespace: &str, name: &str) -> bool {
    node.get_name() == name
        && node
            .get_namespace()
            .is_some_and(|ns| ns.get_href() == namespace)
}

pub(crate) fn children(node: &Node, namespace: &str, name: &str) -> Vec<Node> {
    node.get_child_elements()
        .into_iter()
        .filter(|c| is(c, namespace, name))
        .collect()
}

pub(crate) fn child(node: &Node, namespace: &str, name: &str) -> Option<Node> {
    let mut found = children(node, namespace, name);
    (found.len() == 1).then(|| found.remove(0))
}

/// Assertions (plain or encrypted) and signatures anywhere in the tree, after refusing comments,
/// processing instructions and duplicate IDs.
struct Found {
    assertions: Vec<Node>,
    signatures: Vec<(Node, Node)>,
}

fn inspect(root: &Node) -> Result<Found, Refusal> {
    let mut found = Found {
        assertions: Vec::new(),
        signatures: Vec::new(),
    };
    let mut ids = HashSet::new();
    let mut pending = vec![root.clone()];
    while let Some(element) = pending.pop() {
        if let Some(id) = element.get_property("ID")
            && !ids.insert(id.clone())
        {
            return refuse(Reason::DuplicateId, format!("the ID {id:?} appears twice"));
        }
        if is(&element, ASSERTION, "Assertion") || is(&element, ASSERTION, "EncryptedAssertion") {
            found.assertions.push(element.clone());
        }
        for node in element.get_child_nodes() {
            match node.get_type() {
                Some(NodeType::ElementNode) => {
                    if is(&node, DSIG, "Signature") {
                        found.signatures.push((node.clone(), element.clone()));
                    }
                    pending.push(node);
                }
                // A comment splits a text node: `a@b.com<!---->.evil.com` signs as one value and
                // reads as another in some parsers (CVE-2017-11427). IdPs send none.
                Some(NodeType::CommentNode | NodeType::PiNode) => {
                    return refuse(
                        Reason::Comment,
                        "a comment or processing instruction in the response",
                    );
                }
                Some(NodeType::EntityRefNode | NodeType::EntityNode) => {
                    return refuse(Reason::Doctype, "an entity reference");
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

/// One reference, to the signature's parent, by its ID; the enveloped and canonicalisation
/// transforms only; allowed algorithms. xmlsec would accept more, and each extra is an attack.
fn check_signature_shape(signature: &Node, parent: &Node) -> Result<(), Refusal> {
    let shape = |detail: &str| Refusal::new(Reason::SignatureShape, detail);
    if children(parent, DSIG, "Signature").len() != 1 {
        return Err(shape("more than one signature on one element"));
    }
    let signed_info =
        child(signature, DSIG, "SignedInfo").ok_or_else(|| shape("no single SignedInfo"))?;
    let algorithm = |node: Option<Node>| node.and_then(|n| n.get_property("Algorithm"));
    let canonicalization = algorithm(child(&signed_info, DSIG, "CanonicalizationMethod"));
    if !canonicalization.is_some_and(|c| CANONICALIZATIONS.contains(&c.as_str())) {
        return Err(shape("a canonicalisation other than C14N without comments"));
    }
    let method = algorithm(child(&signed_info, DSIG, "SignatureMethod")).unwrap_or_default();
    if !SIGNATURE_ALGORITHMS
        .iter()
        .any(|a| a.signature_uri() == method)
    {
        return refuse(
            Reason::SignatureAlgorithm,
            format!("signature algorithm {method:?}"),
        );
    }
    let references = children(&signed_info, DSIG, "Reference");
    let [reference] = references.as_slice() else {
        return Err(shape("a signature must hold exactly one Reference"));
    };
    if signed_info.get_child_elements().len() != 3 {
        return Err(shape("unexpected elements in SignedInfo"));
    }
    let parent_id = parent.get_property("ID").unwrap_or_default();
    if parent_id.is_empty() || reference.get_property("URI") != Some(format!("#{parent_id}")) {
        return Err(shape("the reference is not to the signed element's ID"));
    }
    let transforms = child(reference, DSIG, "Transforms")
        .map(|t| children(&t, DSIG, "Transform"))
        .unwrap_or_default();
    for transform in &transforms {
        let kind = transform.get_property("Algorithm").unwrap_or_default();
        if kind != ENVELOPED && !CANONICALIZATIONS.contains(&kind.as_str()) {
            return Err(shape("a transform other than enveloped-signature and C14N"));
        }
    }
    let digest = algorithm(child(reference, DSIG, "DigestMethod")).unwrap_or_default();
    if !SIGNATURE_ALGORITHMS
        .iter()
        .any(|a| a.digest_uri() == digest)
    {
        return refuse(
            Reason::SignatureAlgorithm,
            format!("digest algorithm {digest:?}"),
        );
    }
    Ok(())
}

/// Verifies every signature against the configured certificates and returns the signed content
/// alone (the defence against wrapping: what is read is what was verified).
fn verify(xml: &str, certificates: &[CertificateDer]) -> Result<String, Refusal> {
    Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        certificates,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(&SIGNATURE_ALGORITHMS),
    )
    .map_err(|_| {
        Refusal::new(
            Reason::BadSignature,
            "a signature does not verify with the connection's certificates",
        )
    })
}

fn parse_assertion(xml: &str) -> Result<Assertion, Refusal> {
    xml.parse().map_err(|e| {
        Refusal::new(
            Reason::Malformed,
            format!("the assertion does not parse: {e}"),
        )
    })
}

fn check_envelope(response: &Response, signed: bool, expected: &Expected) -> Result<(), Refusal> {
    if response.version != "2.0" {
        return refuse(
            Reason::NotAResponse,
            format!("SAML version {}", response.version),
        );
    }
    let status = response
        .status
        .as_ref()
        .and_then(|s| s.status_code.value.as_deref());
    if status != Some(SUCCESS) {
        return refuse(Reason::Status, format!("status {status:?}"));
    }
    match &response.destination {
        Some(destination) if destination != expected.acs_url => {
            return refuse(
                Reason::Destination,
                format!("Destination {destination:?} is not this ACS"),
            );
        }
        None if signed => {
            return refuse(Reason::Destination, "a signed Response without Destination");
        }
        _ => {}
    }
    if let Some(issuer) = &response.issuer
        && issuer.value.as_deref() != Some(expected.idp_entity_id)
    {
        return refuse(
            Reason::Issuer,
            format!("Response Issuer {:?}", issuer.value),
        );
    }
    if response.issue_instant > expected.now + expected.clock_skew {
        return refuse(
            Reason::IssuedInFuture,
            "the Response is issued in the future",
        );
    }
    Ok(())
}

fn check_assertion(
    assertion: &Assertion,
    response_in_response_to: Option<&str>,
    expected: &Expected,
) -> Result<Verified, Refusal> {
    let now = expected.now;
    let skew = expected.clock_skew;
    if assertion.issuer.value.as_deref() != Some(expected.idp_entity_id) {
        return refuse(
            Reason::Issuer,
            format!(
                "Issuer {:?} is not this workspace's IdP",
                assertion.issuer.value
            ),
        );
    }
    if assertion.issue_instant > now + skew {
        return refuse(
            Reason::IssuedInFuture,
            "the assertion is issued in the future",
        );
    }
    if assertion.issue_instant + MAX_ASSERTION_AGE + skew < now {
        return refuse(Reason::Expired, "the assertion was issued too long ago");
    }

    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or_else(|| Refusal::new(Reason::Audience, "no Conditions, so no Audience"))?;
    let restrictions = conditions.audience_restrictions.as_deref().unwrap_or(&[]);
    if restrictions.is_empty()
        || !restrictions
            .iter()
            .all(|r| r.audience.iter().any(|a| a == expected.sp_entity_id))
    {
        return refuse(
            Reason::Audience,
            "the audience is not this service provider",
        );
    }
    if conditions.not_before.is_some_and(|t| now + skew < t) {
        return refuse(Reason::NotYetValid, "Conditions NotBefore is in the future");
    }
    if conditions.not_on_or_after.is_some_and(|t| t + skew <= now) {
        return refuse(Reason::Expired, "Conditions NotOnOrAfter has passed");
    }

    let subject = assertion
        .subject
        .as_ref()
        .ok_or_else(|| Refusal::new(Reason::NoSubject, "no Subject"))?;
    let confirmation = bearer_confirmation(subject, response_in_response_to, expected)?;
    let name_id = subject
        .name_id
        .as_ref()
        .filter(|n| !n.value.trim().is_empty())
        .ok_or_else(|| Refusal::new(Reason::NoSubject, "no NameID"))?;

    let authn = assertion.authn_statements.as_deref().unwrap_or(&[]);
    let session_not_on_or_after = authn.iter().filter_map(|s| s.session_not_on_or_after).min();
    if session_not_on_or_after.is_some_and(|t| t + skew <= now) {
        return refuse(Reason::Expired, "the IdP session has ended");
    }
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for attribute in assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| &s.attributes)
    {
        let values: Vec<String> = attribute
            .values
            .iter()
            .filter_map(|v| v.value.clone())
            .collect();
        for name in [&attribute.name, &attribute.friendly_name]
            .into_iter()
            .flatten()
        {
            attributes
                .entry(name.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
    }
    let valid_until = [
        conditions.not_on_or_after,
        Some(confirmation.not_on_or_after),
    ]
    .into_iter()
    .flatten()
    .max()
    .expect("one is always there")
        + skew;
    Ok(Verified {
        assertion_id: assertion.id.clone(),
        in_response_to: confirmation.in_response_to,
        name_id: name_id.value.trim().to_owned(),
        name_id_format: name_id.format.clone(),
        session_index: authn.iter().find_map(|s| s.session_index.clone()),
        session_not_on_or_after,
        attributes,
        valid_until,
    })
}

struct Confirmation {
    not_on_or_after: DateTime<Utc>,
    in_response_to: Option<String>,
}

/// A bearer SubjectConfirmation for this ACS, unexpired, and agreeing with the Response on the
/// request it answers.
fn bearer_confirmation(
    subject: &samael::schema::Subject,
    response_in_response_to: Option<&str>,
    expected: &Expected,
) -> Result<Confirmation, Refusal> {
    let (now, skew) = (expected.now, expected.clock_skew);
    let mut first_refusal = None;
    for confirmation in subject.subject_confirmations.iter().flatten() {
        if confirmation.method.as_deref() != Some(BEARER) {
            continue;
        }
        let Some(data) = &confirmation.subject_confirmation_data else {
            continue;
        };
        let refusal = if data.recipient.as_deref() != Some(expected.acs_url) {
            Refusal::new(
                Reason::Recipient,
                format!("Recipient {:?} is not this ACS", data.recipient),
            )
        } else if data.not_before.is_some_and(|t| now + skew < t) {
            Refusal::new(Reason::NotYetValid, "SubjectConfirmationData NotBefore")
        } else if let Some(not_on_or_after) = data.not_on_or_after {
            if not_on_or_after + skew <= now {
                Refusal::new(Reason::Expired, "SubjectConfirmationData NotOnOrAfter")
            } else if let (Some(ours), Some(theirs)) =
                (response_in_response_to, data.in_response_to.as_deref())
                && ours != theirs
            {
                Refusal::new(
                    Reason::InResponseTo,
                    "the Response and the assertion answer different requests",
                )
            } else {
                return Ok(Confirmation {
                    not_on_or_after,
                    in_response_to: data
                        .in_response_to
                        .clone()
                        .or_else(|| response_in_response_to.map(str::to_owned)),
                });
            }
        } else {
            Refusal::new(
                Reason::SubjectConfirmation,
                "a bearer confirmation without NotOnOrAfter",
            )
        };
        first_refusal.get_or_insert(refusal);
    }
    Err(first_refusal.unwrap_or_else(|| {
        Refusal::new(
            Reason::SubjectConfirmation,
            "no bearer SubjectConfirmation with data",
        )
    }))
}

/// The Response with its EncryptedAssertion taken out, for reading what the envelope says.
fn without_encrypted_assertion(xml: &str) -> Result<String, Refusal> {
    let document = parse_strict(xml)?;
    let root = document
        .get_root_element()
        .ok_or_else(|| Refusal::new(Reason::Malformed, "an empty document"))?;
    if let Some(mut encrypted) = child(&root, ASSERTION, "EncryptedAssertion") {
        encrypted.unlink_node();
    }
    Ok(document.node_to_string(&root))
}

/// Decrypts an EncryptedAssertion and checks what it holds as carefully as a plain one: one
/// assertion, no comments, and its own signature (if any) verified. Returns the assertion and
/// whether it was signed.
fn decrypted_assertion(
    encrypted: &Node,
    key: &PKey<Private>,
    expected: &Expected,
) -> Result<(Assertion, bool), Refusal> {
    let plaintext = decrypt(encrypted, key)?;
    let plaintext = String::from_utf8(plaintext)
        .map_err(|_| Refusal::new(Reason::Decryption, "the plaintext is not UTF-8"))?;
    // The assertion may use prefixes declared around it (on the EncryptedAssertion, the
    // Response); give it those, the innermost declaration of each prefix winning.
    let mut declarations = String::new();
    let mut ancestor = Some(encrypted.clone());
    while let Some(node) = ancestor {
        for namespace in node.get_namespace_declarations() {
            let prefix = namespace.get_prefix();
            let attribute = if prefix.is_empty() {
                "xmlns".to_owned()
            } else {
                format!("xmlns:{prefix}")
            };
            if !declarations.contains(&format!(" {attribute}=")) {
                declarations.push_str(&format!(
                    " {attribute}=\"{}\"",
                    super::xml_escape(&namespace.get_href())
                ));
            }
        }
        ancestor = node.get_parent();
    }
    let wrapped = format!(
        "<idgate:decrypted xmlns:idgate=\"urn:idgate:decrypted\"{declarations}>{plaintext}</idgate:decrypted>"
    );
    let document = parse_strict(&wrapped)?;
    let wrapper = document
        .get_root_element()
        .ok_or_else(|| Refusal::new(Reason::Malformed, "empty plaintext"))?;
    let found = inspect(&wrapper)?;
    let [assertion] = found.assertions.as_slice() else {
        return refuse(
            Reason::AssertionCount,
            "the encrypted data must hold exactly one assertion",
        );
    };
    if wrapper.get_child_elements().len() != 1
        || assertion.get_parent().as_ref() != Some(&wrapper)
        || !is(assertion, ASSERTION, "Assertion")
    {
        return refuse(
            Reason::AssertionCount,
            "the encrypted data holds more than an assertion",
        );
    }
    for (signature, parent) in &found.signatures {
        if parent != assertion {
            return refuse(
                Reason::SignatureShape,
                "a signature outside the decrypted assertion",
            );
        }
        check_signature_shape(signature, parent)?;
    }
    if found.signatures.is_empty() {
        return Ok((parse_assertion(&document.node_to_string(assertion))?, false));
    }
    let signed = verify(&wrapped, expected.certificates)?;
    Ok((parse_assertion(&signed)?, true))
}

fn decryption(detail: impl Into<String>) -> Refusal {
    Refusal::new(Reason::Decryption, detail)
}

fn cipher_value(encrypted: &Node) -> Result<Vec<u8>, Refusal> {
    let value = child(encrypted, XENC, "CipherData")
        .and_then(|data| child(&data, XENC, "CipherValue"))
        .ok_or_else(|| decryption("no CipherValue"))?
        .get_content();
    let compact: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    STANDARD
        .decode(compact)
        .map_err(|_| decryption("CipherValue is not base64"))
}

fn method(encrypted: &Node) -> Option<Node> {
    child(encrypted, XENC, "EncryptionMethod")
}

/// RSA-OAEP key transport (never PKCS#1 v1.5, whose padding oracle recovers keys), then the
/// assertion with AES-GCM, AES-CBC or (as pysaml2 sends it) triple-DES-CBC.
fn decrypt(encrypted_assertion: &Node, key: &PKey<Private>) -> Result<Vec<u8>, Refusal> {
    let data = child(encrypted_assertion, XENC, "EncryptedData")
        .ok_or_else(|| decryption("no single EncryptedData"))?;
    // The content key is in an EncryptedKey inside the data's KeyInfo, or beside the data (named
    // there by RetrievalMethod, KeyName or CarriedKeyName); with several recipients, one of them
    // is this SP's, so each is tried.
    let candidates: Vec<Node> = child(&data, DSIG, "KeyInfo")
        .map(|info| children(&info, XENC, "EncryptedKey"))
        .unwrap_or_default()
        .into_iter()
        .chain(children(encrypted_assertion, XENC, "EncryptedKey"))
        .collect();
    if candidates.is_empty() {
        return Err(decryption("no EncryptedKey"));
    }
    let mut refusal = None;
    let content_key = candidates
        .iter()
        .find_map(|encrypted_key| match content_key(encrypted_key, key) {
            Ok(content_key) => Some(content_key),
            Err(why) => {
                refusal.get_or_insert(why);
                None
            }
        })
        .ok_or_else(|| refusal.expect("at least one candidate"))?;
    decrypt_content(&data, &content_key)
}

/// The content key an EncryptedKey carries, if it was encrypted to this SP's key.
fn content_key(encrypted_key: &Node, key: &PKey<Private>) -> Result<Vec<u8>, Refusal> {
    let key_method = method(encrypted_key).ok_or_else(|| decryption("no key EncryptionMethod"))?;
    let key_algorithm = key_method.get_property("Algorithm").unwrap_or_default();
    let digest_of = |node: Option<Node>, what: &str| -> Result<MessageDigest, Refusal> {
        match node.and_then(|n| n.get_property("Algorithm")).as_deref() {
            None
            | Some("http://www.w3.org/2000/09/xmldsig#sha1")
            | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => Ok(MessageDigest::sha1()),
            Some("http://www.w3.org/2001/04/xmlenc#sha256")
            | Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => Ok(MessageDigest::sha256()),
            Some("http://www.w3.org/2001/04/xmlenc#sha512")
            | Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => Ok(MessageDigest::sha512()),
            Some(other) => Err(decryption(format!("{what} {other:?}"))),
        }
    };
    let oaep_digest = digest_of(child(&key_method, DSIG, "DigestMethod"), "OAEP digest")?;
    let mgf_digest = match key_algorithm.as_str() {
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p" => MessageDigest::sha1(),
        "http://www.w3.org/2009/xmlenc11#rsa-oaep" => {
            digest_of(child(&key_method, XENC11, "MGF"), "MGF")?
        }
        other => {
            return Err(decryption(format!(
                "key transport {other:?}; RSA-OAEP only"
            )));
        }
    };
    let wrapped_key = cipher_value(encrypted_key)?;
    (|| {
        let mut decrypter = Decrypter::new(key)?;
        decrypter.set_rsa_padding(Padding::PKCS1_OAEP)?;
        decrypter.set_rsa_oaep_md(oaep_digest)?;
        decrypter.set_rsa_mgf1_md(mgf_digest)?;
        let mut out = vec![0; decrypter.decrypt_len(&wrapped_key)?];
        let length = decrypter.decrypt(&wrapped_key, &mut out)?;
        out.truncate(length);
        Ok::<_, openssl::error::ErrorStack>(out)
    })()
    .map_err(|_| decryption("the content key does not decrypt with this SP's key"))
}

/// The assertion the EncryptedData holds, decrypted with `content_key`.
fn decrypt_content(data: &Node, content_key: &[u8]) -> Result<Vec<u8>, Refusal> {
    let content_algorithm = method(data)
        .and_then(|m| m.get_property("Algorithm"))
        .unwrap_or_default();
    let (cipher, gcm) = match content_algorithm.as_str() {
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => (Cipher::aes_128_gcm(), true),
        "http://www.w3.org/2009/xmlenc11#aes192-gcm" => (Cipher::aes_192_gcm(), true),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => (Cipher::aes_256_gcm(), true),
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => (Cipher::aes_128_cbc(), false),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => (Cipher::aes_192_cbc(), false),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => (Cipher::aes_256_cbc(), false),
        // What pysaml2 (SATOSA, djangosaml2idp) encrypts with, and no setting changes. Only the
        // assertion's confidentiality rests on it, and that was the IdP's choice to make.
        "http://www.w3.org/2001/04/xmlenc#tripledes-cbc" => (Cipher::des_ede3_cbc(), false),
        other => return Err(decryption(format!("content encryption {other:?}"))),
    };
    if content_key.len() != cipher.key_len() {
        return Err(decryption("the content key has the wrong length"));
    }
    let ciphertext = cipher_value(data)?;
    let iv_length = if gcm { 12 } else { cipher.block_size() };
    let tag_length = if gcm { 16 } else { 0 };
    if ciphertext.len() < iv_length + tag_length + 1 {
        return Err(decryption("the ciphertext is too short"));
    }
    let (iv, rest) = ciphertext.split_at(iv_length);
    let (body, tag) = rest.split_at(rest.len() - tag_length);
    let plaintext = (|| {
        let mut crypter = Crypter::new(cipher, Mode::Decrypt, content_key, Some(iv))?;
        crypter.pad(false);
        let mut out = vec![0; body.len() + cipher.block_size()];
        let mut length = crypter.update(body, &mut out)?;
        if gcm {
            crypter.set_tag(tag)?;
        }
        length += crypter.finalize(&mut out[length..])?;
        out.truncate(length);
        Ok::<_, openssl::error::ErrorStack>(out)
    })()
    .map_err(|_| decryption("the assertion does not decrypt"))?;
    if gcm {
        return Ok(plaintext);
    }
    // XML Encryption's CBC padding: the last byte says how many bytes to drop.
    let padding = usize::from(*plaintext.last().expect("at least one block"));
    if padding == 0 || padding > cipher.block_size() || padding > plaintext.len() {
        return Err(decryption("bad padding"));
    }
    Ok(plaintext[..plaintext.len() - padding].to_vec())
}
