//! Reads kept in memory while the database is unchanged, for the reads that repeat most: a
//! token's check on every request, one user read again and again, a session a reverse proxy
//! asks about.
//!
//! An entry made from data read after seeing version V (see [`super::changes`]) is true for as
//! long as the version is still V; once it moves, every entry is dropped. Where the version is
//! not known (the change watch is down), nothing is kept and every request reads.

use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use hashbrown::{Equivalent, HashMap};
use prometheus::IntCounter;

use crate::metrics::metrics;

/// A state of the database: equal versions saw the same committed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataVersion(pub(super) i64);

#[cfg(test)]
impl DataVersion {
    /// A version as a test needs one, without a database.
    pub(crate) const fn at(number: i64) -> DataVersion {
        DataVersion(number)
    }
}

/// Entries of one kind, all made at one version.
pub struct Memo<K, V> {
    state: Mutex<State<K, V>>,
    capacity: usize,
    counted: Counted,
}

/// What `/metrics` tells of a memo.
struct Counted {
    hits: IntCounter,
    misses: IntCounter,
    invalidations: IntCounter,
}

struct State<K, V> {
    version: Option<DataVersion>,
    /// hashbrown's map, for look-ups by a borrowed form of a key of two strings (std's needs the
    /// key itself: two allocations a look-up) and its foldhash, a tenth of SipHash's cost on ids.
    /// Only what was read from the database is inserted, so a caller cannot choose colliding keys.
    entries: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// Holds at most `capacity` entries; past that it starts over. `name` labels its counts in
    /// `/metrics`.
    pub fn new(name: &str, capacity: usize) -> Memo<K, V> {
        let counter = |event| metrics().cache_counter(name, event);
        Memo {
            state: Mutex::new(State {
                version: None,
                entries: HashMap::new(),
            }),
            capacity,
            counted: Counted {
                hits: counter("hit"),
                misses: counter("miss"),
                invalidations: counter("invalidation"),
            },
        }
    }

    /// The entry for `key` (or for what it stands for, borrowed), if one was made at `version`.
    pub fn get<Q: Hash + Equivalent<K> + ?Sized>(
        &self,
        version: DataVersion,
        key: &Q,
    ) -> Option<V> {
        let found = {
            let state = self.state_at(version);
            (state.version == Some(version))
                .then(|| state.entries.get(key).cloned())
                .flatten()
        };
        match found {
            Some(_) => self.counted.hits.inc(),
            None => self.counted.misses.inc(),
        }
        found
    }

    /// Keeps `value`, read after the database was seen at `version`, unless the database has
    /// been seen to move on since.
    pub fn put(&self, version: DataVersion, key: K, value: V) {
        let mut state = self.state_at(version);
        if state.version != Some(version) {
            return;
        }
        if state.entries.len() >= self.capacity {
            state.entries.clear();
        }
        state.entries.insert(key, value);
    }

    /// The state, once every entry is dropped if a later version than its own has been seen. An
    /// earlier one (a request that asked before a commit and arrives after one that asked since)
    /// changes nothing.
    fn state_at(&self, version: DataVersion) -> MutexGuard<'_, State<K, V>> {
        let mut state = lock(&self.state);
        if state.version.is_none_or(|held| held < version) {
            state.version = Some(version);
            if !state.entries.is_empty() {
                state.entries.clear();
                self.counted.invalidations.inc();
            }
        }
        state
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the state whole (a map, the change watch's two
    // fields): keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_last_until_the_version_moves() {
        let memo = Memo::new("test", 10);
        let (v1, v2) = (DataVersion::at(1), DataVersion::at(2));
        memo.put(v1, "a", 1);
        assert_eq!(memo.get(v1, &"a"), Some(1));
        assert_eq!(memo.get(v2, &"a"), None, "a later version drops the entry");
        assert_eq!(memo.get(v1, &"a"), None);

        // Read before the move, kept after it: not kept, it may be stale.
        memo.put(v1, "b", 2);
        assert_eq!(memo.get(v2, &"b"), None);
        assert_eq!(memo.get(v1, &"b"), None);
        memo.put(v2, "b", 3);
        assert_eq!(memo.get(v2, &"b"), Some(3));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let memo = Memo::new("test", 2);
        let version = DataVersion::at(1);
        memo.put(version, 1, ());
        memo.put(version, 2, ());
        memo.put(version, 3, ());
        assert_eq!(memo.get(version, &1), None);
        assert_eq!(memo.get(version, &3), Some(()));
    }
}
