//! Deciding batches of `{subject, action, resource}` checks for `POST .../authorize`. Each subject
//! and resource is loaded once per batch, or taken from the [`DecisionCache`] while the workspace's
//! access version is unchanged; then every check is answered in memory.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use super::AccessError;
use super::cache::DecisionCache;
use super::decide::{Decision, Target, decide_for_token};
use super::{members, parse, resources};
use crate::db::DbConnection;
use crate::db::schema::workspaces;
use crate::directory;
use crate::permissions::Action;
use crate::tokens::{self, ApiToken};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// A member id, userName or email; or a token id (`token:ID` or the bare id).
    pub subject: String,
    pub action: String,
    pub resource: Option<String>,
}

/// A token is named by its id, or `token:` and its id.
fn token_id(subject: &str) -> Option<&str> {
    let id = subject.strip_prefix("token:").unwrap_or(subject);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Decides every check, in order. An unknown action, an unknown resource or one of the wrong kind
/// fails the whole batch with a 400; an unknown subject is simply not allowed.
pub fn decide_all(
    conn: &mut DbConnection,
    cache: &DecisionCache,
    workspace_id: &str,
    checks: Vec<Check>,
    visible: &dyn Fn(Target<'_>) -> bool,
) -> Result<Vec<Decision>, AccessError> {
    use diesel::prelude::*;

    let actions: Vec<Action> = checks
        .iter()
        .map(|check| parse(&check.action))
        .collect::<Result<_, _>>()?;
    // Read before anything is loaded: what is loaded next is at least as new as this version.
    let (version, tracking_plan_approval): (i64, bool) = workspaces::table
        .find(workspace_id)
        .select((
            workspaces::access_version,
            workspaces::tracking_plan_approval,
        ))
        .first(conn)?;
    let subject_names: BTreeSet<&str> = checks.iter().map(|c| c.subject.as_str()).collect();
    let resource_ids: BTreeSet<&str> = checks
        .iter()
        .filter_map(|c| c.resource.as_deref())
        .collect();
    // Principals are cached by member id, and ids are never reused. Other names (userName,
    // email) are resolved on every batch: creating a user does not raise the version, and a new
    // user may take a name that resolved to someone else before.
    let mut found = cache.lookup(
        workspace_id,
        version,
        subject_names.iter().copied(),
        resource_ids.iter().copied(),
    );
    let unresolved: BTreeSet<&str> = found.missing_subjects.iter().map(String::as_str).collect();
    let people = directory::find_many(conn, workspace_id, &unresolved)?;

    let mut loaded_resources = HashMap::new();
    if !found.missing_resources.is_empty() {
        let wanted = found.missing_resources.iter().cloned().collect();
        for (id, resource) in resources::load_with_sources(conn, workspace_id, &wanted)? {
            loaded_resources.insert(id, Arc::new(resource));
        }
    }
    let mut loaded_principals = HashMap::new();
    if !people.is_empty() {
        let by_id = cache.lookup(
            workspace_id,
            version,
            people.values().map(|member| member.id.as_str()),
            [],
        );
        found.principals.extend(by_id.principals);
        let mut missing: Vec<directory::Member> = people
            .values()
            .filter(|member| !found.principals.contains_key(&member.id))
            .cloned()
            .collect();
        missing.sort_by(|a, b| a.id.cmp(&b.id));
        missing.dedup_by(|a, b| a.id == b.id);
        for principal in members::principals(conn, workspace_id, &missing)? {
            loaded_principals.insert(principal.member_id.clone(), Arc::new(principal));
        }
    }
    let mut tokens: HashMap<&str, ApiToken> = HashMap::new();
    let now = crate::time::now();
    for name in unresolved.iter().filter(|name| !people.contains_key(*name)) {
        let token = match token_id(name) {
            Some(id) => tokens::find(conn, workspace_id, id)?,
            None => None,
        };
        if let Some(token) = token.filter(|token| token.status(now) == "active") {
            tokens.insert(name, token);
        }
    }
    cache.store(workspace_id, version, &loaded_principals, &loaded_resources);
    found.principals.extend(loaded_principals);
    found.resources.extend(loaded_resources);

    // A cached destination may need its source, which this batch did not name.
    let sources: BTreeSet<String> = found
        .resources
        .values()
        .filter_map(|r| r.source_id.clone())
        .filter(|id| !found.resources.contains_key(id))
        .collect();
    if !sources.is_empty() {
        for (id, resource) in resources::load_with_sources(conn, workspace_id, &sources)? {
            found.resources.insert(id, Arc::new(resource));
        }
    }
    let resource_of = |id: &str| found.resources.get(id).map(|r| r.as_ref());
    // A resource the caller may not see is answered as one that does not exist.
    if let Some(missing) = resource_ids.iter().find(|id| {
        resource_of(id).is_none_or(|resource| !visible(Target::with_source(resource, resource_of)))
    }) {
        return Err(AccessError::Invalid(format!(
            "no resource {missing:?} in this workspace that you may read"
        )));
    }

    let now = crate::time::now();
    checks
        .iter()
        .zip(actions)
        .map(|(check, action)| {
            let target = check.resource.as_deref().map(|id| {
                Target::with_source(resource_of(id).expect("checked above"), resource_of)
            });
            let member_id = people
                .get(check.subject.as_str())
                .map_or(check.subject.as_str(), |member| member.id.as_str());
            let principal = found.principals.get(member_id);
            let decided = match (principal, tokens.get(check.subject.as_str())) {
                (Some(principal), _) => {
                    principal.decide(action, target, tracking_plan_approval, now)
                }
                (None, Some(token)) => decide_for_token(&token.scopes, action, target),
                (None, None) => Ok(Decision {
                    allowed: false,
                    reason: "no such member or token in this workspace".to_owned(),
                }),
            };
            decided.map_err(|wrong| AccessError::Invalid(wrong.to_string()))
        })
        .collect()
}
