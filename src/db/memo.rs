//! Reads kept in memory while the database is unchanged, for the reads that repeat most: a
//! token's check on every request, one user read again and again.
//!
//! SQLite only. A connection of the store's own that never writes asks `PRAGMA data_version`,
//! which moves whenever any other connection commits: this server's writer, another server on
//! the same file, the CLI revoking a token. An entry made from data read after seeing version V
//! is true for as long as the version is still V; once it moves, every entry is dropped. The
//! question is one read transaction on memory SQLite already holds, a fraction of the reads it
//! saves, and it is asked on every request, so a change is seen by the very next request:
//! nothing is served stale for any length of time. PostgreSQL has no question as cheap, so there
//! nothing is kept and every request reads.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::prepared::prepared_sqlite;
use super::{DatabaseUrl, DbConnection, open_connection};

/// A state of the database: equal versions saw the same committed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataVersion(i64);

#[cfg(test)]
impl DataVersion {
    /// A version as a test needs one, without a database.
    pub(crate) const fn at(number: i64) -> DataVersion {
        DataVersion(number)
    }
}

/// The connection that asks for the version.
pub struct ChangeWatch {
    conn: Mutex<SqliteConnection>,
}

impl ChangeWatch {
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<ChangeWatch> {
        let DbConnection::Sqlite(mut conn) = open_connection(url)? else {
            anyhow::bail!("only SQLite reports a data version");
        };
        // Asked on the request's own thread: never wait for a lock (then the request reads as if
        // nothing were kept), and never write, or this connection's own commits would not move
        // the version it reports.
        conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = ON;")?;
        Ok(ChangeWatch {
            conn: Mutex::new(conn),
        })
    }

    /// The database's version now, or None when SQLite cannot say at once.
    pub fn version(&self) -> Option<DataVersion> {
        match DataVersionPragma.get_result(&mut *lock(&self.conn)) {
            Ok(version) => Some(DataVersion(version)),
            Err(error) => {
                tracing::debug!(%error, "the data version is not known: reading without the memo");
                None
            }
        }
    }
}

prepared_sqlite!(
    /// `PRAGMA data_version`, kept prepared: both its literal SQL and `pragma_data_version()`
    /// (which prepares the pragma inside every run) cost more than the question.
    DataVersionPragma = "PRAGMA data_version" -> BigInt
);

/// Entries of one kind, all made at one version.
pub struct Memo<K, V> {
    state: Mutex<State<K, V>>,
    capacity: usize,
}

struct State<K, V> {
    version: Option<DataVersion>,
    entries: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    /// Holds at most `capacity` entries; past that it starts over.
    pub fn new(capacity: usize) -> Memo<K, V> {
        Memo {
            state: Mutex::new(State {
                version: None,
                entries: HashMap::new(),
            }),
            capacity,
        }
    }

    /// The entry for `key`, if one was made at `version`.
    pub fn get(&self, version: DataVersion, key: &K) -> Option<V> {
        let mut state = lock(&self.state);
        state.move_to(version);
        (state.version == Some(version))
            .then(|| state.entries.get(key).cloned())
            .flatten()
    }

    /// Keeps `value`, read after the database was seen at `version`, unless the database has
    /// been seen to move on since.
    pub fn put(&self, version: DataVersion, key: K, value: V) {
        let mut state = lock(&self.state);
        state.move_to(version);
        if state.version != Some(version) {
            return;
        }
        if state.entries.len() >= self.capacity {
            state.entries.clear();
        }
        state.entries.insert(key, value);
    }
}

impl<K, V> State<K, V> {
    /// Drops every entry once a later version has been seen. An earlier one (a request that
    /// asked before a commit and arrives after one that asked since) changes nothing.
    fn move_to(&mut self, version: DataVersion) {
        if self.version.is_none_or(|held| held < version) {
            self.version = Some(version);
            self.entries.clear();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the state whole: a connection between statements,
    // or a map; keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(dir: &tempfile::TempDir) -> DatabaseUrl {
        let path = dir.path().join("memo.db");
        DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap()
    }

    #[test]
    fn any_other_connections_commit_moves_the_version_and_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite(&dir);
        let mut other = open_connection(&url).unwrap();
        other
            .batch_execute("CREATE TABLE rows (name TEXT NOT NULL)")
            .unwrap();
        let watch = ChangeWatch::open(&url).unwrap();

        let before = watch.version().unwrap();
        other.batch_execute("SELECT count(*) FROM rows").unwrap();
        assert_eq!(watch.version().unwrap(), before, "a read changes nothing");
        other
            .batch_execute("INSERT INTO rows VALUES ('a')")
            .unwrap();
        let after = watch.version().unwrap();
        assert!(after > before, "{after:?} after {before:?}");
    }

    #[test]
    fn entries_last_until_the_version_moves() {
        let memo = Memo::new(10);
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
        let memo = Memo::new(2);
        let version = DataVersion::at(1);
        memo.put(version, 1, ());
        memo.put(version, 2, ());
        memo.put(version, 3, ());
        assert_eq!(memo.get(version, &1), None);
        assert_eq!(memo.get(version, &3), Some(()));
    }
}
