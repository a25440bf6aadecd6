//! The HTTP-Redirect binding (SAML bindings 3.4): a message deflated and base64-encoded into the
//! query, signed over the query's own bytes. Sending signs what idgate sends (AuthnRequests,
//! LogoutRequests, LogoutResponses); receiving verifies an IdP's LogoutRequest over the raw
//! query exactly as it arrived, with a bounded inflate, and never panics on what it is given.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use url::form_urlencoded;

use super::SamlError;
use super::response::{MAX_RESPONSE_BYTES, Reason, Refusal};

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// The signature algorithms accepted on a redirect: RSA and ECDSA with SHA-2.
fn digest_of(sig_alg: &str) -> Option<MessageDigest> {
    Some(match sig_alg {
        RSA_SHA256 | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => {
            MessageDigest::sha256()
        }
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

fn internal(what: &str) -> impl Fn(std::io::Error) -> SamlError + '_ {
    move |error| SamlError::Internal(format!("{what}: {error}"))
}

/// The URL that carries `xml` to `destination` as `parameter` (`SAMLRequest` or
/// `SAMLResponse`), signed with RSA-SHA256 by `key`.
pub fn signed_redirect(
    destination: &str,
    parameter: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: &PKey<Private>,
) -> Result<String, SamlError> {
    let mut deflater = DeflateEncoder::new(Vec::new(), Compression::default());
    deflater
        .write_all(xml.as_bytes())
        .map_err(internal("deflating a SAML message"))?;
    let deflated = deflater
        .finish()
        .map_err(internal("deflating a SAML message"))?;
    // The signature covers exactly these parameters, in this order, URL-encoded.
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair(parameter, &STANDARD.encode(deflated));
    if let Some(relay_state) = relay_state {
        query.append_pair("RelayState", relay_state);
    }
    let signed = query.append_pair("SigAlg", RSA_SHA256).finish();
    let signature = Signer::new(MessageDigest::sha256(), key)
        .and_then(|mut signer| {
            signer.update(signed.as_bytes())?;
            signer.sign_to_vec()
        })
        .map_err(|e| SamlError::Internal(format!("signing a SAML message: {e}")))?;
    let separator = if destination.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{destination}{separator}{signed}&{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("Signature", &STANDARD.encode(signature))
            .finish()
    ))
}

/// A message received by the Redirect binding, its signature verified.
#[derive(Debug)]
pub struct Received {
    pub xml: String,
    pub relay_state: Option<String>,
}

fn refused(reason: Reason, detail: &str) -> Refusal {
    Refusal::new(reason, detail)
}

/// Verifies `parameter`'s message in a raw query string against the IdP's certificates and
/// inflates it (at most [`MAX_RESPONSE_BYTES`]).
pub fn receive(
    raw_query: &str,
    parameter: &str,
    certificates: &[X509],
) -> Result<Received, Refusal> {
    let raw_value = |name: &str| -> Result<Option<&str>, Refusal> {
        let mut found = raw_query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value);
        let first = found.next();
        if found.next().is_some() {
            return Err(refused(Reason::Malformed, "a parameter appears twice"));
        }
        Ok(first)
    };
    let decoded = |raw: &str| -> String {
        form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    let message = raw_value(parameter)?
        .ok_or_else(|| refused(Reason::Malformed, "no message in the query"))?;
    let relay_state = raw_value("RelayState")?;
    let (Some(sig_alg), Some(signature)) = (raw_value("SigAlg")?, raw_value("Signature")?) else {
        return Err(refused(Reason::Unsigned, "an unsigned redirect message"));
    };
    let digest = digest_of(&decoded(sig_alg))
        .ok_or_else(|| refused(Reason::SignatureAlgorithm, "SigAlg is not allowed"))?;
    let signature = STANDARD
        .decode(decoded(signature))
        .map_err(|_| refused(Reason::NotBase64, "the Signature is not base64"))?;
    let mut signed = format!("{parameter}={message}");
    if let Some(relay_state) = relay_state {
        signed.push_str(&format!("&RelayState={relay_state}"));
    }
    signed.push_str(&format!("&SigAlg={sig_alg}"));
    let verifies = |certificate: &X509| -> bool {
        (|| {
            let key = certificate.public_key()?;
            let mut verifier = Verifier::new(digest, &key)?;
            verifier.update(signed.as_bytes())?;
            verifier.verify(&signature)
        })()
        .unwrap_or(false)
    };
    if !certificates.iter().any(verifies) {
        return Err(refused(
            Reason::BadSignature,
            "the redirect signature does not verify with the connection's certificates",
        ));
    }
    let deflated = STANDARD
        .decode(decoded(message))
        .map_err(|_| refused(Reason::NotBase64, "the message is not base64"))?;
    // Inflate no more than a response may hold, so a small bomb cannot fill memory.
    let mut xml = Vec::new();
    DeflateDecoder::new(&deflated[..])
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut xml)
        .map_err(|_| refused(Reason::Malformed, "the message does not inflate"))?;
    if xml.len() > MAX_RESPONSE_BYTES {
        return Err(refused(
            Reason::TooLarge,
            "the message inflates past the limit",
        ));
    }
    Ok(Received {
        xml: String::from_utf8(xml).map_err(|_| refused(Reason::Malformed, "not UTF-8"))?,
        relay_state: relay_state.map(decoded),
    })
}
