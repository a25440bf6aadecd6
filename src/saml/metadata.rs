//! Reading an IdP's SAML metadata into what a connection needs: entity ID, the HTTP-Redirect
//! single sign-on and logout URLs, the signing certificates and `validUntil`.

use chrono::NaiveDateTime;
use samael::metadata::EntityDescriptor;

use super::SamlError;
use super::certificates::Certificate;

/// The largest metadata document accepted (Entra's, with several certificates, is under 20 KB).
pub const MAX_METADATA_BYTES: usize = 1 << 20;

const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_url: String,
    pub slo_url: Option<String>,
    pub certificates: Vec<Certificate>,
    pub valid_until: Option<NaiveDateTime>,
}

fn invalid(reason: impl Into<String>) -> SamlError {
    SamlError::InvalidMetadata(reason.into())
}

pub fn parse(xml: &str) -> Result<IdpMetadata, SamlError> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(invalid(format!("larger than {MAX_METADATA_BYTES} bytes")));
    }
    // A DTD is the door to entity expansion and parser differentials; metadata never needs one.
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(invalid("a document type declaration is not accepted"));
    }
    let descriptor: EntityDescriptor = xml
        .parse()
        .map_err(|e| invalid(format!("not an md:EntityDescriptor: {e}")))?;
    let entity_id = descriptor
        .entity_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| invalid("the EntityDescriptor has no entityID"))?;
    let idp = match descriptor.idp_sso_descriptors.as_deref() {
        Some([idp]) => idp,
        Some([]) | None => {
            return Err(invalid(
                "there is no IDPSSODescriptor: is this an IdP's metadata?",
            ));
        }
        Some(_) => return Err(invalid("there is more than one IDPSSODescriptor")),
    };
    let redirect = |endpoints: &[samael::metadata::Endpoint]| {
        endpoints
            .iter()
            .find(|e| e.binding == REDIRECT_BINDING)
            .map(|e| e.location.clone())
    };
    let sso_url = redirect(&idp.single_sign_on_services)
        .ok_or_else(|| invalid("there is no SingleSignOnService with the HTTP-Redirect binding"))?;
    // A KeyDescriptor without `use` is for signing and encryption alike (SAML metadata 2.4.1.1):
    // it is a signing key, never a reason to skip verification.
    let mut certificates = Vec::new();
    for key in idp
        .key_descriptors
        .iter()
        .filter(|key| key.key_use.as_deref().is_none_or(|u| u == "signing"))
    {
        for encoded in key
            .key_info
            .x509_data
            .iter()
            .flat_map(|data| &data.certificates)
        {
            let certificate = Certificate::from_base64(encoded)
                .map_err(|e| invalid(format!("a signing certificate is unreadable: {e}")))?;
            if !certificates.contains(&certificate) {
                certificates.push(certificate);
            }
        }
    }
    if certificates.is_empty() {
        return Err(invalid("there is no signing certificate"));
    }
    let valid_until = [descriptor.valid_until, idp.valid_until]
        .into_iter()
        .flatten()
        .min()
        .map(|t| t.naive_utc());
    Ok(IdpMetadata {
        entity_id,
        sso_url,
        slo_url: redirect(&idp.single_logout_services),
        certificates,
        valid_until,
    })
}
