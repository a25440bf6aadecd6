//! Principals and resources loaded for decisions, kept per workspace while its access version is
//! unchanged. Every audited change raises the version in its own transaction, so an entry made
//! from data read after seeing version V is true until the version moves on; then the workspace's
//! entries are dropped. Replicas each keep their own cache and all read the version from the
//! database, so a change through one replica is seen by the next decision on any of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::decide::{Principal, Resource};

/// Entries kept across all workspaces before the cache starts over: bounds memory (a principal
/// with its grants is a few hundred bytes) whatever the size of the workspaces.
const MAX_ENTRIES: usize = 20_000;

#[derive(Default)]
pub struct DecisionCache {
    workspaces: Mutex<HashMap<String, WorkspaceEntry>>,
}

#[derive(Default)]
struct WorkspaceEntry {
    version: i64,
    /// By member id.
    principals: HashMap<String, Arc<Principal>>,
    resources: HashMap<String, Arc<Resource>>,
}

impl WorkspaceEntry {
    fn len(&self) -> usize {
        self.principals.len() + self.resources.len()
    }
}

/// What the cache held for a request, and what it still needs loaded.
pub struct Lookup {
    pub principals: HashMap<String, Arc<Principal>>,
    pub resources: HashMap<String, Arc<Resource>>,
    pub missing_subjects: Vec<String>,
    pub missing_resources: Vec<String>,
}

impl DecisionCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, WorkspaceEntry>> {
        // A panic while holding the lock leaves maps that are still whole: keep using them.
        self.workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Splits what a request needs into what is cached at `version` and what is not.
    pub fn lookup<'a>(
        &self,
        workspace_id: &str,
        version: i64,
        subjects: impl IntoIterator<Item = &'a str>,
        resources: impl IntoIterator<Item = &'a str>,
    ) -> Lookup {
        let mut workspaces = self.lock();
        let entry = workspaces.entry(workspace_id.to_owned()).or_default();
        if entry.version != version {
            *entry = WorkspaceEntry {
                version,
                ..WorkspaceEntry::default()
            };
        }
        let mut lookup = Lookup {
            principals: HashMap::new(),
            resources: HashMap::new(),
            missing_subjects: Vec::new(),
            missing_resources: Vec::new(),
        };
        for name in subjects {
            match entry.principals.get(name) {
                Some(principal) => {
                    lookup.principals.insert(name.to_owned(), principal.clone());
                }
                None => lookup.missing_subjects.push(name.to_owned()),
            }
        }
        for id in resources {
            match entry.resources.get(id) {
                Some(resource) => {
                    // A destination's source was loaded and stored along with it.
                    if let Some(source) = resource
                        .source_id
                        .as_ref()
                        .and_then(|source_id| entry.resources.get(source_id))
                    {
                        lookup.resources.insert(source.id.clone(), source.clone());
                    }
                    lookup.resources.insert(id.to_owned(), resource.clone());
                }
                None => lookup.missing_resources.push(id.to_owned()),
            }
        }
        lookup
    }

    /// Keeps what was loaded after seeing `version`, unless the workspace has moved past it.
    pub fn store(
        &self,
        workspace_id: &str,
        version: i64,
        principals: &HashMap<String, Arc<Principal>>,
        resources: &HashMap<String, Arc<Resource>>,
    ) {
        let mut workspaces = self.lock();
        let total: usize = workspaces.values().map(WorkspaceEntry::len).sum();
        if total + principals.len() + resources.len() > MAX_ENTRIES {
            workspaces.clear();
        }
        let entry = workspaces.entry(workspace_id.to_owned()).or_default();
        if entry.version != version {
            return;
        }
        for (name, principal) in principals {
            entry.principals.insert(name.clone(), principal.clone());
        }
        for (id, resource) in resources {
            entry.resources.insert(id.clone(), resource.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str) -> Arc<Principal> {
        Arc::new(Principal {
            member_id: id.to_owned(),
            user_name: id.to_owned(),
            active: true,
            roles: Vec::new(),
            grants: Vec::new(),
        })
    }

    #[test]
    fn entries_live_only_as_long_as_their_version() {
        let cache = DecisionCache::default();
        let missing = cache.lookup("ws", 1, ["ann"], []);
        assert_eq!(missing.missing_subjects, ["ann"]);
        let loaded = HashMap::from([("ann".to_owned(), principal("ann"))]);
        cache.store("ws", 1, &loaded, &HashMap::new());
        assert!(
            cache
                .lookup("ws", 1, ["ann"], [])
                .missing_subjects
                .is_empty()
        );
        assert!(
            cache.lookup("other", 1, ["ann"], []).missing_subjects == ["ann"],
            "workspaces apart"
        );
        assert_eq!(cache.lookup("ws", 2, ["ann"], []).missing_subjects, ["ann"]);
        cache.store("ws", 1, &loaded, &HashMap::new());
        assert_eq!(
            cache.lookup("ws", 2, ["ann"], []).missing_subjects,
            ["ann"],
            "what was loaded at an older version is not kept"
        );
    }
}
