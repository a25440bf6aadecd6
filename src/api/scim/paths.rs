//! Entra ID's provisioning (and its validator) writes SCIM paths in other cases (`/scim/v2/users`)
//! and with a trailing slash (`/Users/?filter=...`). RFC 7644 names the endpoints but says nothing
//! of case, and no two of them differ only in case, so before routing a SCIM path is rewritten to
//! the endpoint's own spelling: the endpoint segments only, never an id, which is case-sensitive.
//! The SCIM 1.1 name `/serviceConfiguration` is answered as `/ServiceProviderConfig`.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;

use super::SCOPE;

/// Endpoint names as served, and the other names answered as them.
const ENDPOINTS: [(&str, &str); 8] = [
    ("users", "Users"),
    ("groups", "Groups"),
    ("serviceproviderconfig", "ServiceProviderConfig"),
    ("serviceconfiguration", "ServiceProviderConfig"),
    ("resourcetypes", "ResourceTypes"),
    ("schemas", "Schemas"),
    ("bulk", "Bulk"),
    (".search", ".search"),
];

fn served_name(segment: &str) -> Option<&'static str> {
    let lower = segment.to_ascii_lowercase();
    ENDPOINTS
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, served)| *served)
}

/// The path as routed, when it differs from `path`.
pub fn canonical(path: &str) -> Option<String> {
    let prefix = path.get(..SCOPE.len())?;
    if !prefix.eq_ignore_ascii_case(SCOPE) {
        return None;
    }
    let rest = &path[SCOPE.len()..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let trimmed = rest.trim_end_matches('/');
    let mut segments: Vec<String> = trimmed.split('/').skip(1).map(str::to_owned).collect();
    // `/Users`, `/.search`, `/Users/.search`, `/Users/{id}`: the first and a trailing `.search`.
    for index in [0, 1] {
        let is_endpoint = index == 0
            || segments
                .get(index)
                .is_some_and(|s| served_name(s) == Some(".search"));
        if let Some(segment) = segments.get_mut(index).filter(|_| is_endpoint)
            && let Some(served) = served_name(segment)
        {
            *segment = served.to_owned();
        }
    }
    let canonical: String = std::iter::once(SCOPE.to_owned())
        .chain(segments.into_iter().map(|s| format!("/{s}")))
        .collect();
    (canonical != path).then_some(canonical)
}

/// Rewrites a SCIM request's path to its canonical spelling before it is routed.
pub async fn canonical_paths(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if let Some(path) = canonical(request.path()) {
        let target = match request.query_string() {
            "" => path,
            query => format!("{path}?{query}"),
        };
        if let Ok(uri) = target.parse::<Uri>() {
            request.match_info_mut().get_mut().update(&uri);
            request.head_mut().uri = uri;
        }
    }
    next.call(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_are_spelled_as_served_and_ids_are_left_alone() {
        for (sent, routed) in [
            ("/scim/v2/users", Some("/scim/v2/Users")),
            ("/scim/v2/Users/", Some("/scim/v2/Users")),
            ("/SCIM/V2/GROUPS/", Some("/scim/v2/Groups")),
            ("/scim/v2/users/AbC-123", Some("/scim/v2/Users/AbC-123")),
            ("/scim/v2/users/AbC-123/", Some("/scim/v2/Users/AbC-123")),
            ("/scim/v2/users/.SEARCH", Some("/scim/v2/Users/.search")),
            (
                "/scim/v2/serviceConfiguration",
                Some("/scim/v2/ServiceProviderConfig"),
            ),
            (
                "/scim/v2/schemas/urn:x:User",
                Some("/scim/v2/Schemas/urn:x:User"),
            ),
            ("/scim/v2/Users", None),
            ("/scim/v2/Users/users", None),
            ("/scim/v2/Unknown", None),
            ("/scim/v2", None),
            ("/scim/v2x/users", None),
            ("/api/v1/users", None),
        ] {
            assert_eq!(canonical(sent).as_deref(), routed, "{sent}");
        }
    }
}
