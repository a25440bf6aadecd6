//! How this process learns that the database changed, so that what [`super::memo`] keeps is
//! dropped: a version, counted in this process, that moves with every commit, whoever made it.
//!
//! This process's own commits move it at once, so a request sees what the request before it
//! wrote. Other processes' commits (another replica, another server on the same SQLite file, the
//! CLI revoking a token) move it when a thread of the watch's own hears of them, on a connection
//! of its own:
//!
//! - SQLite: the thread asks `PRAGMA data_version` every [`POLL`]; it moves whenever another
//!   connection commits. (Asked on every request instead, under a lock, the question cost a third
//!   of a kept read's time.)
//! - PostgreSQL: the thread `LISTEN`s on [`CHANNEL`]. A process announces its commits after they
//!   are made, on the watch's connection: a `NOTIFY` inside the writing transaction would make
//!   PostgreSQL commit every such transaction one after the other (it holds a lock across the
//!   commit), which cut a write benchmark from 7,500 to 2,800 commits a second; sent afterwards,
//!   commits announced together share one.
//!
//! A second version, the credentials version, moves with every commit except those that change
//! only the directory ([`Reach::Directory`]): what a token's check reads is kept at it, so that
//! provisioning, which writes many times a second, does not make every request read its token
//! again. A PostgreSQL announcement names a directory-only commit (the payload `directory`); any
//! other announcement, an older replica's included, moves both versions. SQLite's data version
//! cannot tell, so every commit of another connection moves both.
//!
//! A notice can be lost: the watch's connection dies before its `NOTIFY` is sent (a network blip,
//! a connection killer, a failover), or the process dies between a commit and its announcement.
//! So an announcement is kept until its `NOTIFY` has gone out, on a new connection if need be;
//! a watch that listens again announces a general change; and, whatever else happens, every
//! commit counts itself in the table `commit_counts` in its own transaction (a trigger on each
//! table a memo may read), whose sum the watch reads every [`COUNT`]: a commit nobody announced
//! moves the versions within that bound. PostgreSQL writes by hand are seen the same way.
//!
//! Another process's commit is seen within [`POLL`] plus the network's delay, and on PostgreSQL
//! at the latest within [`COUNT`] whatever became of its notice. While the watch's connection
//! fails, or has not answered for [`SILENT_AFTER`], the version is unknown and nothing is kept;
//! when it answers again, the version moves once, for whatever was missed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::memo::{DataVersion, lock};
use super::prepared::prepared_sqlite;
use super::{Backend, DatabaseUrl, DbConnection, open_connection};

/// The PostgreSQL channel every idgate process announces its commits on.
pub const CHANNEL: &str = "idgate_changes";
/// How often the watch looks for other processes' commits.
const POLL: Duration = Duration::from_millis(20);
/// How often a PostgreSQL watch reads the commit count, which also shows that its connection
/// still answers: the longest a commit whose notice was lost stays unseen.
pub const COUNT: Duration = Duration::from_millis(250);
/// How often a PostgreSQL watch folds the counts of server processes gone into one row.
const TIDY: Duration = Duration::from_secs(600);
/// A watch not heard from for this long may have missed a commit: nothing is kept.
const SILENT_AFTER: Duration = Duration::from_secs(1);
/// How long the watch waits before connecting again.
const RECONNECT: Duration = Duration::from_millis(250);

/// What a commit may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// SCIM users and groups, their memberships and index rows, the audit events recording them
    /// and workspaces' access versions: nothing of a token, nor of its workspace but the access
    /// version, which a token's check does not use.
    Directory,
    /// Anything at all: both versions move.
    Anything,
}

/// The payload of an announcement of directory-only commits.
const DIRECTORY_PAYLOAD: &str = "directory";

/// The versions, and what the watch's thread shares with the requests.
pub struct ChangeWatch {
    version: AtomicI64,
    credentials: AtomicI64,
    state: Mutex<WatchState>,
    /// Woken when this process has a commit to announce.
    wake: Condvar,
    /// PostgreSQL's processes announce their commits; SQLite's version moves by itself.
    announces: bool,
}

struct WatchState {
    /// When the watch's connection last answered; None while it fails.
    heard_at: Option<Instant>,
    /// How far the commits made here since the last announcement reach; None if none was made.
    unannounced: Option<Reach>,
}

impl ChangeWatch {
    /// Starts the watch's thread on a connection of its own; it ends once the watch is dropped.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Arc<ChangeWatch>> {
        let conn = open_connection(url)?;
        let watch = Arc::new(ChangeWatch {
            version: AtomicI64::new(0),
            credentials: AtomicI64::new(0),
            state: Mutex::new(WatchState {
                heard_at: None,
                unannounced: None,
            }),
            wake: Condvar::new(),
            announces: url.backend() == Backend::Postgres,
        });
        let weak = Arc::downgrade(&watch);
        let url = url.clone();
        let follow = move || match conn {
            DbConnection::Sqlite(conn) => poll_sqlite(&weak, conn),
            DbConnection::Postgres(conn) => follow_postgres(&weak, &url, conn),
        };
        std::thread::Builder::new()
            .name("idgate-changes".into())
            .spawn(follow)?;
        Ok(watch)
    }

    /// The database's version now, or None while it cannot be known.
    pub fn version(&self) -> Option<DataVersion> {
        self.read(&self.version)
    }

    /// The credentials version now (see the module's comment), or None while it cannot be known.
    pub fn credentials_version(&self) -> Option<DataVersion> {
        self.read(&self.credentials)
    }

    fn read(&self, counter: &AtomicI64) -> Option<DataVersion> {
        let heard_at = lock(&self.state).heard_at?;
        // Read after the check: a version read before a reconnection's move could outlive it.
        (heard_at.elapsed() < SILENT_AFTER).then(|| DataVersion(counter.load(Ordering::SeqCst)))
    }

    /// Called once this process has committed a write that reaches as far as `reach`.
    pub fn committed(&self, reach: Reach) {
        self.changed(reach);
        if self.announces {
            self.to_announce(reach);
        }
    }

    /// Leaves a commit reaching as far as `reach` for the watch's thread to announce.
    fn to_announce(&self, reach: Reach) {
        let mut state = lock(&self.state);
        state.unannounced = state.unannounced.max(Some(reach));
        self.wake.notify_one();
    }

    fn changed(&self, reach: Reach) {
        if reach == Reach::Anything {
            self.credentials.fetch_add(1, Ordering::SeqCst);
        }
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    fn heard(&self, answered: bool) {
        lock(&self.state).heard_at = answered.then(Instant::now);
    }
}

prepared_sqlite!(
    /// `PRAGMA data_version`, kept prepared: both its literal SQL and `pragma_data_version()`
    /// (which prepares the pragma inside every run) cost more than the question.
    DataVersionPragma = "PRAGMA data_version" -> BigInt
);

/// Announces a commit made on `conn` outside any [`ChangeWatch`] (the CLI's own connection).
pub fn announce(conn: &mut DbConnection, reach: Reach) -> QueryResult<()> {
    match conn {
        DbConnection::Postgres(conn) => conn.batch_execute(&announcement(reach)),
        DbConnection::Sqlite(_) => Ok(()),
    }
}

fn announcement(reach: Reach) -> String {
    match reach {
        Reach::Directory => format!("NOTIFY {CHANNEL}, '{DIRECTORY_PAYLOAD}'"),
        Reach::Anything => format!("NOTIFY {CHANNEL}"),
    }
}

/// The SQLite watch's thread: asks for the data version every [`POLL`] until the watch is dropped.
fn poll_sqlite(watch: &Weak<ChangeWatch>, mut conn: SqliteConnection) {
    // Never wait for a lock (the next poll asks again), and never write, or this connection's
    // own commits would not move the version it reports.
    if let Err(error) = conn.batch_execute("PRAGMA busy_timeout = 0; PRAGMA query_only = ON;") {
        tracing::warn!(%error, "the change watch cannot start: reading without the memo");
        return;
    }
    let mut seen = None;
    loop {
        let Some(live) = watch.upgrade() else {
            return;
        };
        match DataVersionPragma.get_result::<i64>(&mut conn) {
            Ok(version) => {
                if seen.is_some_and(|seen| seen != version) {
                    live.changed(Reach::Anything);
                }
                seen = Some(version);
                live.heard(true);
            }
            Err(error) => tracing::debug!(%error, "the data version is not known yet"),
        }
        drop(live);
        std::thread::sleep(POLL);
    }
}

/// The PostgreSQL watch's thread: listens on `conn` until it fails, then connects again, until the
/// watch is dropped.
fn follow_postgres(watch: &Weak<ChangeWatch>, url: &DatabaseUrl, conn: PgConnection) {
    let mut conn = Some(conn);
    let mut lost = false;
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
            Ok(mut conn) => match listen(watch, &mut conn, &mut lost) {
                Ok(()) => return,
                Err(error) => error.to_string(),
            },
            Err(error) => error,
        };
        let Some(live) = watch.upgrade() else { return };
        live.heard(false);
        drop(live);
        if !lost {
            tracing::warn!(%error, "the change watch lost its connection: reading without the memo until it is back");
            lost = true;
        }
        std::thread::sleep(RECONNECT);
    }
}

/// Listens on `conn` and announces this process's commits until the watch is dropped (Ok) or the
/// connection fails. `lost` says the connection before this one failed; it is cleared once this
/// one listens.
fn listen(watch: &Weak<ChangeWatch>, conn: &mut PgConnection, lost: &mut bool) -> QueryResult<()> {
    // Named, so that an operator (or a test) can tell this connection in `pg_stat_activity`.
    conn.batch_execute(&format!(
        "SELECT set_config('application_name', \
         concat_ws(': ', nullif(current_setting('application_name'), ''), 'idgate change watch'), \
         false); LISTEN {CHANNEL}"
    ))?;
    let own_pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(conn)?;
    tidy_commit_counts(conn)?;
    let mut commits = commit_count(conn)?;
    {
        let Some(live) = watch.upgrade() else {
            return Ok(());
        };
        // Commits made while nobody listened were not heard of; and any announcement this
        // process failed to make is made now, with a general one for whatever else was missed.
        live.changed(Reach::Anything);
        live.heard(true);
        if std::mem::take(lost) {
            live.to_announce(Reach::Anything);
            tracing::info!("the change watch is back: listening for other replicas' commits");
        } else {
            tracing::info!("the change watch listens for other replicas' commits");
        }
    }
    let (mut counted_at, mut tidied_at) = (Instant::now(), Instant::now());
    loop {
        let Some(live) = watch.upgrade() else {
            return Ok(());
        };
        let announce = {
            let state = lock(&live.state);
            let (mut state, _) = live
                .wake
                .wait_timeout_while(state, POLL, |state| state.unannounced.is_none())
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.unannounced.take()
        };
        if let Some(reach) = announce
            && let Err(error) = conn.batch_execute(&announcement(reach))
        {
            // Kept for the next connection: a notice is dropped only once it has gone out.
            live.to_announce(reach);
            return Err(error);
        }
        let mut others_reached = None;
        for notification in conn.notifications_iter() {
            let notification = notification?;
            if notification.process_id != own_pid {
                let reach = match notification.payload.as_str() {
                    DIRECTORY_PAYLOAD => Reach::Directory,
                    _ => Reach::Anything,
                };
                others_reached = others_reached.max(Some(reach));
            }
        }
        if let Some(reach) = others_reached {
            live.changed(reach);
        }
        if counted_at.elapsed() >= COUNT {
            let now = commit_count(conn)?;
            // Moved after the count is read: whatever is read at the new version sees those
            // commits. This process's own commits move it too, at most once a [`COUNT`].
            if now != commits {
                live.changed(Reach::Anything);
                commits = now;
            }
            live.heard(true);
            counted_at = Instant::now();
        }
        if tidied_at.elapsed() >= TIDY {
            tidy_commit_counts(conn)?;
            tidied_at = Instant::now();
        }
    }
}

/// How many commits have counted themselves in `commit_counts`: it only ever grows.
fn commit_count(conn: &mut PgConnection) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT coalesce(sum(commits), 0)::bigint FROM commit_counts)",
    ))
    .get_result(conn)
}

/// Folds the rows of server processes gone into row 0 in one statement, so the sum is unchanged
/// and the table holds about one row per live connection, however many came and went.
fn tidy_commit_counts(conn: &mut PgConnection) -> QueryResult<()> {
    conn.batch_execute(
        "WITH gone AS ( \
             DELETE FROM commit_counts \
             WHERE backend <> 0 AND backend NOT IN (SELECT pid FROM pg_stat_activity) \
             RETURNING commits) \
         INSERT INTO commit_counts (backend, commits) \
         SELECT 0, sum(commits) FROM gone HAVING count(*) > 0 \
         ON CONFLICT (backend) DO UPDATE SET commits = commit_counts.commits + excluded.commits",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to a second for `holds`.
    fn within_a_second(holds: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < SILENT_AFTER {
            if holds() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn another_connections_commit_moves_the_version_and_its_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.db");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
        let mut other = open_connection(&url).unwrap();
        other
            .batch_execute("CREATE TABLE rows (name TEXT NOT NULL)")
            .unwrap();
        let watch = ChangeWatch::open(&url).unwrap();
        assert!(within_a_second(|| watch.version().is_some()));

        let before = watch.version().unwrap();
        other.batch_execute("SELECT count(*) FROM rows").unwrap();
        std::thread::sleep(POLL * 3);
        assert_eq!(watch.version().unwrap(), before, "a read changes nothing");
        other
            .batch_execute("INSERT INTO rows VALUES ('a')")
            .unwrap();
        assert!(within_a_second(|| watch.version().unwrap() > before));

        let before = watch.version().unwrap();
        let credentials = watch.credentials_version().unwrap();
        watch.committed(Reach::Directory);
        assert!(
            watch.version().unwrap() > before,
            "this process's own commit, at once"
        );
        assert_eq!(watch.credentials_version().unwrap(), credentials);
        watch.committed(Reach::Anything);
        assert!(watch.credentials_version().unwrap() > credentials);

        // SQLite cannot tell what another connection's commit changed.
        let credentials = watch.credentials_version().unwrap();
        other
            .batch_execute("INSERT INTO rows VALUES ('b')")
            .unwrap();
        assert!(within_a_second(
            || watch.credentials_version().unwrap() > credentials
        ));
    }
}
