//! The service-provider side of a workspace: its entity ID and endpoints under the base URL, its
//! own keys (made on first need, kept in the database so every replica uses the same), and the
//! metadata document an IdP admin imports.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

use super::{SamlError, xml_escape};
use crate::db::schema::sp_keys;
use crate::db::{Conn, DbConnection, StoreError};

const RSA_BITS: u32 = 2048;
const CERTIFICATE_DAYS: u32 = 3650;

/// The NameID formats idgate reads: an email, or an opaque persistent or unspecified identifier.
pub const NAME_ID_FORMATS: [&str; 3] = [
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
];

/// URLs of a workspace's service provider.
pub struct Endpoints {
    pub entity_id: String,
    pub acs: String,
    /// Single logout, HTTP-Redirect binding.
    pub slo: String,
}

impl Endpoints {
    pub fn new(base_url: &str, slug: &str) -> Self {
        let root = format!("{base_url}/saml/{slug}");
        Endpoints {
            entity_id: format!("{root}/metadata"),
            acs: format!("{root}/acs"),
            slo: format!("{root}/slo"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Signing,
    Encryption,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Signing => "signing",
            Purpose::Encryption => "encryption",
        }
    }
}

pub struct SpKey {
    pub private_key: PKey<Private>,
    pub certificate: X509,
}

fn generate(common_name: &str) -> Result<(String, Vec<u8>), openssl::error::ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(RSA_BITS)?)?;
    let mut name = X509NameBuilder::new()?;
    // The CN is informational; IdPs match the certificate itself.
    let common_name: String = common_name.chars().take(64).collect();
    name.append_entry_by_text("CN", &common_name)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let (not_before, not_after) = (
        Asn1Time::days_from_now(0)?,
        Asn1Time::days_from_now(CERTIFICATE_DAYS)?,
    );
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.sign(&key, MessageDigest::sha256())?;
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8()?).expect("PEM is ASCII");
    Ok((pem, builder.build().to_der()?))
}

fn load(
    conn: &mut DbConnection,
    workspace_id: &str,
    purpose: Purpose,
) -> QueryResult<Option<(String, Vec<u8>)>> {
    sp_keys::table
        .find((workspace_id, purpose.as_str()))
        .select((sp_keys::private_key_pem, sp_keys::certificate_der))
        .first(conn)
        .optional()
}

/// The workspace's key for `purpose`, made and stored the first time. Two replicas making one at
/// once both end up with the one that was stored first.
pub fn key(
    conn: &mut Conn,
    workspace_id: &str,
    common_name: &str,
    purpose: Purpose,
) -> Result<SpKey, SamlError> {
    let stored = match load(conn, workspace_id, purpose)? {
        Some(stored) => stored,
        None => {
            let (pem, der) = generate(common_name)
                .map_err(|e| SamlError::Internal(format!("making an SP key: {e}")))?;
            let inserted = conn
                .write(|tx| {
                    diesel::insert_into(sp_keys::table)
                        .values((
                            sp_keys::workspace_id.eq(workspace_id),
                            sp_keys::purpose.eq(purpose.as_str()),
                            sp_keys::private_key_pem.eq(&pem),
                            sp_keys::certificate_der.eq(&der),
                            sp_keys::created_at.eq(crate::time::now()),
                        ))
                        .execute(tx.conn())
                })
                .map_err(StoreError::from);
            match inserted {
                Ok(_) => (pem, der),
                Err(error) if error.is_unique_violation() => {
                    load(conn, workspace_id, purpose)?.ok_or(StoreError::NotFound)?
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    let (pem, der) = stored;
    let broken =
        |e: openssl::error::ErrorStack| SamlError::Internal(format!("a stored SP key: {e}"));
    Ok(SpKey {
        private_key: PKey::private_key_from_pem(pem.as_bytes()).map_err(broken)?,
        certificate: X509::from_der(&der).map_err(broken)?,
    })
}

/// The KeyDescriptor of one SP key, with `extra` elements inside it.
fn key_descriptor(purpose: Purpose, certificate: &X509, extra: &str) -> String {
    let der = certificate.to_der().expect("a parsed certificate encodes");
    format!(
        r#"    <md:KeyDescriptor use="{}">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{extra}
    </md:KeyDescriptor>
"#,
        purpose.as_str(),
        STANDARD.encode(der)
    )
}

/// The SP metadata: entity ID, both keys, single logout (HTTP-Redirect), the NameID formats, the
/// ACS (HTTP-POST). `WantAssertionsSigned` says what the connection enforces, so an IdP that
/// signs only the Response is told the truth about whether that will do.
pub fn metadata(
    endpoints: &Endpoints,
    signing: &SpKey,
    encryption: &SpKey,
    want_assertions_signed: bool,
) -> String {
    let encryption_methods: String = [
        "http://www.w3.org/2009/xmlenc11#aes256-gcm",
        "http://www.w3.org/2009/xmlenc11#aes128-gcm",
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    ]
    .iter()
    .map(|algorithm| format!("\n      <md:EncryptionMethod Algorithm=\"{algorithm}\"/>"))
    .collect();
    let formats: String = NAME_ID_FORMATS
        .iter()
        .map(|format| format!("    <md:NameIDFormat>{format}</md:NameIDFormat>\n"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="{want_assertions_signed}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
{signing}{encryption}    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{slo}"/>
{formats}    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#,
        entity_id = xml_escape(&endpoints.entity_id),
        signing = key_descriptor(Purpose::Signing, &signing.certificate, ""),
        encryption = key_descriptor(
            Purpose::Encryption,
            &encryption.certificate,
            &encryption_methods
        ),
        acs = xml_escape(&endpoints.acs),
        slo = xml_escape(&endpoints.slo),
    )
}
