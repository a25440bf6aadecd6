//! IdP signing certificates: parsed once when a connection is set, kept as DER with what an admin
//! needs to see (subject, expiry, SHA-256 fingerprint).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{NaiveDateTime, TimeDelta};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use serde::Serialize;

/// A certificate this close to expiry is shown as `expiring`.
pub const EXPIRY_WARNING: TimeDelta = TimeDelta::days(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// SHA-256 of the DER, hex, as IdP consoles show it.
    pub fingerprint: String,
    pub subject: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub not_after: NaiveDateTime,
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl Certificate {
    pub fn from_der(der: &[u8]) -> Result<Certificate, String> {
        let x509 = X509::from_der(der).map_err(|_| "not an X.509 certificate".to_owned())?;
        let fingerprint = x509
            .digest(MessageDigest::sha256())
            .map_err(|e| e.to_string())?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let subject = x509
            .subject_name()
            .entries()
            .filter_map(|entry| entry.data().to_string().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
        let age = epoch.diff(x509.not_after()).map_err(|e| e.to_string())?;
        let not_after = chrono::DateTime::UNIX_EPOCH.naive_utc()
            + TimeDelta::days(age.days.into())
            + TimeDelta::seconds(age.secs.into());
        Ok(Certificate {
            fingerprint,
            subject,
            not_after,
            der: der.to_vec(),
        })
    }

    /// The base64 of an `X509Certificate` element, whitespace allowed.
    pub fn from_base64(encoded: &str) -> Result<Certificate, String> {
        let compact: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(compact)
            .map_err(|_| "not base64".to_owned())?;
        Certificate::from_der(&der)
    }

    /// Every certificate of a PEM file (`-----BEGIN CERTIFICATE-----` blocks).
    pub fn from_pem(pem: &str) -> Result<Vec<Certificate>, String> {
        let stack =
            X509::stack_from_pem(pem.as_bytes()).map_err(|_| "not a PEM certificate".to_owned())?;
        if stack.is_empty() {
            return Err("no certificate in the PEM text".to_owned());
        }
        stack
            .iter()
            .map(|x509| Certificate::from_der(&x509.to_der().map_err(|e| e.to_string())?))
            .collect()
    }

    /// `valid`, `expiring` (within 30 days) or `expired`, as of `now`.
    pub fn status(&self, now: NaiveDateTime) -> &'static str {
        if self.not_after <= now {
            "expired"
        } else if self.not_after - now <= EXPIRY_WARNING {
            "expiring"
        } else {
            "valid"
        }
    }
}
