//! How this process learns that the database changed, so that what [`super::memo`] keeps is
//! dropped: a version that moves with every commit, whoever made it.
//!
//! SQLite: a connection of the store's own that never writes asks `PRAGMA data_version`, which
//! moves whenever any other connection commits: this server's writer, another server on the same
//! file, the CLI revoking a token. The question is one read on memory SQLite already holds and is
//! asked on every request, so a change is seen by the very next request.
//!
//! PostgreSQL: a version counted in this process, moved by its own commits at once and by every
//! other process's commits when their notification on [`CHANNEL`] arrives (`LISTEN`). A process
//! announces its commits after they are made, on the feed's own connection: a `NOTIFY` inside the
//! writing transaction would make PostgreSQL commit every such transaction one after the other
//! (it holds a lock across the commit), which cut a write benchmark from 7,500 to 2,800 commits a
//! second; sent afterwards, commits announced together share one. Another replica sees a commit
//! within [`POLL`] plus the network's delay. While the feed's connection is down, or has not been
//! heard from for [`SILENT_AFTER`], the version is unknown and nothing is kept; when it is back,
//! the version moves once, for whatever was missed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::memo::{DataVersion, lock};
use super::prepared::prepared_sqlite;
use super::{DatabaseUrl, DbConnection, open_connection};

/// The PostgreSQL channel every idgate process announces its commits on.
pub const CHANNEL: &str = "idgate_changes";
/// How often the feed looks for other processes' notifications.
const POLL: Duration = Duration::from_millis(20);
/// How often the feed makes sure its connection still answers.
const PING: Duration = Duration::from_millis(250);
/// A feed not heard from for this long may have missed notifications: nothing is kept.
const SILENT_AFTER: Duration = Duration::from_secs(1);
/// How long the feed waits before connecting again.
const RECONNECT: Duration = Duration::from_millis(250);

/// Where this process learns of changes.
pub enum ChangeWatch {
    Sqlite(Mutex<SqliteConnection>),
    Postgres(Arc<ChangeFeed>),
}

impl ChangeWatch {
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<ChangeWatch> {
        match open_connection(url)? {
            DbConnection::Sqlite(mut conn) => {
                // Asked on the request's own thread: never wait for a lock (then the request
                // reads as if nothing were kept), and never write, or this connection's own
                // commits would not move the version it reports.
                conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = ON;")?;
                Ok(ChangeWatch::Sqlite(Mutex::new(conn)))
            }
            DbConnection::Postgres(conn) => {
                Ok(ChangeWatch::Postgres(ChangeFeed::start(url.clone(), conn)))
            }
        }
    }

    /// The database's version now, or None when it cannot be known at once.
    pub fn version(&self) -> Option<DataVersion> {
        match self {
            ChangeWatch::Sqlite(conn) => match DataVersionPragma.get_result(&mut *lock(conn)) {
                Ok(version) => Some(DataVersion(version)),
                Err(error) => {
                    tracing::debug!(%error, "the data version is not known: reading without the memo");
                    None
                }
            },
            ChangeWatch::Postgres(feed) => feed.version(),
        }
    }

    /// Called once this process has committed a write. SQLite's version moves by itself.
    pub fn committed(&self) {
        if let ChangeWatch::Postgres(feed) = self {
            feed.committed();
        }
    }
}

prepared_sqlite!(
    /// `PRAGMA data_version`, kept prepared: both its literal SQL and `pragma_data_version()`
    /// (which prepares the pragma inside every run) cost more than the question.
    DataVersionPragma = "PRAGMA data_version" -> BigInt
);

/// Announces a commit made on `conn` outside any [`ChangeFeed`] (the CLI's own connection).
pub fn announce(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Postgres(conn) => conn.batch_execute(&format!("NOTIFY {CHANNEL}")),
        DbConnection::Sqlite(_) => Ok(()),
    }
}

/// The PostgreSQL side: a version, and a thread with a connection of its own that listens for
/// other processes' commits and announces this one's.
pub struct ChangeFeed {
    version: AtomicI64,
    state: Mutex<FeedState>,
    /// Woken when this process has a commit to announce.
    wake: Condvar,
}

struct FeedState {
    /// When the connection last answered, while it listens; None while it is down.
    heard_at: Option<Instant>,
    /// Commits made here since the last announcement.
    unannounced: bool,
}

impl ChangeFeed {
    /// Starts the feed's thread on `conn`; it ends once the feed is dropped.
    fn start(url: DatabaseUrl, conn: PgConnection) -> Arc<ChangeFeed> {
        let feed = Arc::new(ChangeFeed {
            version: AtomicI64::new(0),
            state: Mutex::new(FeedState {
                heard_at: None,
                unannounced: false,
            }),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&feed);
        std::thread::Builder::new()
            .name("idgate-changes".into())
            .spawn(move || follow(&weak, &url, conn))
            .expect("cannot start the change feed's thread");
        feed
    }

    fn version(&self) -> Option<DataVersion> {
        let heard_at = lock(&self.state).heard_at?;
        // Read after the check: a version read before a reconnection's move could outlive it.
        (heard_at.elapsed() < SILENT_AFTER)
            .then(|| DataVersion(self.version.load(Ordering::SeqCst)))
    }

    fn committed(&self) {
        self.changed();
        lock(&self.state).unannounced = true;
        self.wake.notify_one();
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    fn heard(&self, listening: bool) {
        lock(&self.state).heard_at = listening.then(Instant::now);
    }
}

/// The feed's thread: listens on `conn` until it fails, then connects again, until the feed is
/// dropped.
fn follow(feed: &Weak<ChangeFeed>, url: &DatabaseUrl, conn: PgConnection) {
    let mut conn = Some(conn);
    let mut failing = false;
    loop {
        let connected = match conn.take() {
            Some(conn) => Ok(conn),
            None => match open_connection(url) {
                Ok(DbConnection::Postgres(conn)) => Ok(conn),
                Ok(DbConnection::Sqlite(_)) => unreachable!("the URL names PostgreSQL"),
                Err(error) => Err(error.to_string()),
            },
        };
        let error = match connected {
            Ok(mut conn) => match listen(feed, &mut conn) {
                Ok(()) => return,
                Err(error) => error.to_string(),
            },
            Err(error) => error,
        };
        let Some(live) = feed.upgrade() else { return };
        live.heard(false);
        drop(live);
        if !failing {
            tracing::warn!(%error, "the change feed lost its connection: reading without the memo until it is back");
        }
        failing = true;
        std::thread::sleep(RECONNECT);
    }
}

/// Listens on `conn` and announces this process's commits until the feed is dropped (Ok) or the
/// connection fails.
fn listen(feed: &Weak<ChangeFeed>, conn: &mut PgConnection) -> QueryResult<()> {
    conn.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    let own_pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(conn)?;
    {
        let Some(feed) = feed.upgrade() else {
            return Ok(());
        };
        // Commits made while nobody listened were not heard of.
        feed.changed();
        feed.heard(true);
        tracing::info!("the change feed listens for other replicas' commits");
    }
    let mut pinged_at = Instant::now();
    loop {
        let Some(feed) = feed.upgrade() else {
            return Ok(());
        };
        let announce = {
            let state = lock(&feed.state);
            let (mut state, _) = feed
                .wake
                .wait_timeout_while(state, POLL, |state| !state.unannounced)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::take(&mut state.unannounced)
        };
        if announce {
            conn.batch_execute(&format!("NOTIFY {CHANNEL}"))?;
        }
        let mut others_committed = false;
        for notification in conn.notifications_iter() {
            others_committed |= notification?.process_id != own_pid;
        }
        if others_committed {
            feed.changed();
        }
        if pinged_at.elapsed() >= PING {
            conn.batch_execute("SELECT 1")?;
            feed.heard(true);
            pinged_at = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_other_connections_commit_moves_the_version_and_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
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
}
