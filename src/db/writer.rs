//! Group commit for SQLite: the writes of one process go through one connection and share
//! transactions.
//!
//! SQLite lets one writer in at a time, and a commit is most of a write's cost: every page the
//! transaction changed is appended to the WAL, and every thousand pages a checkpoint copies them
//! into the database file and syncs it. A write that finds others queued behind it therefore
//! leaves the transaction open for them (its own work kept in a savepoint) and waits; the last
//! of the group commits once for all. Pages the group's writes share (the B-trees' upper levels,
//! the audit log's last page) reach the WAL once instead of once per write. Nobody is answered
//! before the commit that holds their write: a failed commit fails every write of the group.
//!
//! One connection rather than whichever the pool hands out has a second gain: a connection's
//! page cache survives its own commits but not another connection's, so the writer keeps in
//! memory the pages writes keep coming back to.
//!
//! The writes run on one thread of the writer's own, one after the other as they are queued,
//! while the request threads that queued them wait. When each request's thread ran its own write
//! under a lock, every write began with a hand-over of that lock, and on a loaded machine the
//! thread it went to often had to wait for a core first, with the writer idle. rayon's
//! `ThreadPool::install` is what runs a closure that borrows from its caller on another thread
//! without unsafe code; a pool of one thread is the writer's queue.
//!
//! Checkpoints (copying the WAL's pages into the database file and syncing it) run on a thread of
//! their own instead of inside a commit, where SQLite runs them by default and where, under write
//! load, they took a third of the writer's time. A checkpoint running beside the writes never
//! finds the WAL idle and so never lets SQLite rewind it: once the WAL file is longer than
//! [`WalLimits::rewind_past`], the writer itself checkpoints between two transactions, as SQLite
//! would have, and the next write starts the WAL over, cutting the file back to that length. It
//! does so between the checkpoint thread's checkpoints, not waiting for one: their sync can take
//! a few hundred milliseconds, and every write would have waited with it. Only a WAL past
//! [`WalLimits::wait_past`] (a disk so slow that one checkpoint outlasts that much writing) makes
//! the writer wait for the checkpoint thread, so that the file stops growing somewhere.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};

use diesel::RunQueryDsl;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::prepared::prepared_sqlite;
use super::{DatabaseUrl, DbConnection, Tx, open_connection};

/// The most writes one transaction takes: a bound on how long the first of them waits for the
/// commit.
const MAX_GROUP: usize = 32;

/// A background checkpoint is asked for after this many commits.
const COMMITS_PER_CHECKPOINT: usize = 16;

/// How long the writer lets the WAL file grow.
#[derive(Clone, Copy, Debug)]
struct WalLimits {
    /// Past this length the writer rewinds the WAL, unless a background checkpoint is running.
    rewind_past: u64,
    /// Past this length it waits for a running background checkpoint and then rewinds.
    wait_past: u64,
}

/// SQLite's own automatic checkpoint keeps the WAL near 4 MiB; longer, it is rewound less often.
const WAL_LIMITS: WalLimits = WalLimits {
    rewind_past: 16 * 1024 * 1024,
    wait_past: 64 * 1024 * 1024,
};

pub struct SqliteWriter {
    url: DatabaseUrl,
    /// The one thread that runs writes, one after the other as they are queued.
    thread: rayon_core::ThreadPool,
    /// Locked by the writer's thread alone (and by tests).
    state: Mutex<State>,
    /// Writes queued for the writer's thread. A write that sees one leaves the commit to it.
    queued: AtomicUsize,
    checkpoint_due: SyncSender<()>,
    /// Held by whoever checkpoints: a checkpoint that finds another running gives up at once, so
    /// the writer rewinds only once the thread's has ended.
    checkpointing: Arc<Mutex<()>>,
    wal_path: std::path::PathBuf,
    wal_limits: WalLimits,
}

struct State {
    conn: DbConnection,
    /// The group whose transaction is open on `conn`, if any, and how many writes it holds.
    open: Option<Arc<Group>>,
    writes_in_group: usize,
    commits: usize,
}

/// The request threads whose writes share one transaction wait here for its end, while the
/// writer's thread goes on with the next group's writes.
#[derive(Default)]
struct Group {
    /// Set once, when the transaction ends: whether it committed.
    outcome: Mutex<Option<Result<(), CommitFailure>>>,
    ended: Condvar,
}

impl Group {
    fn end(&self, outcome: Result<(), CommitFailure>) {
        *lock_ignoring_poison(&self.outcome) = Some(outcome);
        self.ended.notify_all();
    }

    fn wait_for_end(&self) -> Result<(), CommitFailure> {
        let outcome = self
            .ended
            .wait_while(lock_ignoring_poison(&self.outcome), |outcome| {
                outcome.is_none()
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outcome.clone().expect("waited for the group to end")
    }
}

/// Nothing that panics holds these locks with its data half changed: poison means nothing.
fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why a group's commit failed, told to every write of the group (diesel's error is not Clone).
#[derive(Clone, Debug)]
struct CommitFailure {
    kind: DatabaseErrorKind,
    message: String,
}

impl CommitFailure {
    fn of(error: &DieselError) -> Self {
        let kind = match error {
            DieselError::DatabaseError(kind, _) => *kind,
            _ => DatabaseErrorKind::Unknown,
        };
        CommitFailure {
            kind,
            message: error.to_string(),
        }
    }

    fn into_error(self) -> DieselError {
        DieselError::DatabaseError(self.kind, Box::new(self.message))
    }
}

impl SqliteWriter {
    /// Opens the writer's connection and starts its thread and its checkpoint thread, which end
    /// with the writer.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Arc<SqliteWriter>> {
        Self::open_with(url, WAL_LIMITS)
    }

    fn open_with(url: &DatabaseUrl, wal_limits: WalLimits) -> anyhow::Result<Arc<SqliteWriter>> {
        let conn = open_writer_connection(url, wal_limits)?;
        let checkpoints = open_connection(url)?;
        let (checkpoint_due, due) = sync_channel(1);
        let checkpointing = Arc::new(Mutex::new(()));
        let thread_checkpointing = checkpointing.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_when_due(checkpoints, due, thread_checkpointing))?;
        let thread = rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "sqlite-writer".to_owned())
            .build()?;
        Ok(Arc::new(SqliteWriter {
            url: url.clone(),
            thread,
            state: Mutex::new(State {
                conn,
                open: None,
                writes_in_group: 0,
                commits: 0,
            }),
            queued: AtomicUsize::new(0),
            checkpoint_due,
            checkpointing,
            wal_path: format!("{}-wal", url.sqlite_path()).into(),
            wal_limits,
        }))
    }

    /// How many writes wait for the writer's thread now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Runs `work` inside the writer's transaction and returns once that transaction has ended:
    /// `work`'s value if it committed, `work`'s error (its changes rolled back) if it failed.
    pub fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send,
        T: Send,
        E: From<DieselError> + Send,
    {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let (group, outcome) = self.thread.install(|| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            self.run_in_group(work)
        })?;
        let ended = group.wait_for_end();

        let value = match outcome {
            Ok(value) => value,
            Err(Work::Failed(error)) => return Err(error),
            Err(Work::Panicked(panic)) => resume_unwind(panic),
        };
        match ended {
            Ok(()) => Ok(value),
            Err(failure) => Err(failure.into_error().into()),
        }
    }

    /// On the writer's thread: runs `work` in a savepoint of the open group's transaction
    /// (opening one if none is), and commits the group unless more writes are queued behind it.
    fn run_in_group<T, E, F>(&self, work: F) -> Result<(Arc<Group>, Outcome<T, E>), E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
        E: From<DieselError>,
    {
        let mut state = self.lock();
        let group = match &state.open {
            Some(group) => group.clone(),
            None => {
                self.replace_if_unusable(&mut state)?;
                let conn = sqlite(&mut state.conn);
                // Immediate: take the write lock now, so that another process's writer makes
                // this one wait (busy timeout) rather than fail when it first writes.
                AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")?;
                let group = Arc::new(Group::default());
                state.open = Some(group.clone());
                state.writes_in_group = 0;
                group
            }
        };
        state.writes_in_group += 1;

        // This write's changes live in a savepoint: undone alone if it fails or panics.
        let outcome = match savepoint(&mut state.conn, work) {
            Ok(outcome) => outcome,
            Err(savepoint_error) => {
                // The connection cannot say what it holds: end the whole group.
                self.end_group(&mut state, false);
                return Err(savepoint_error.into());
            }
        };

        let others_waiting = self.queued.load(Ordering::SeqCst) > 0;
        if !(others_waiting && state.writes_in_group < MAX_GROUP) {
            self.end_group(&mut state, true);
        }
        Ok((group, outcome))
    }

    /// Between groups the connection is outside any transaction. One that is not (a failed
    /// rollback left it inside one, or diesel's record of it is broken) would fail every write
    /// from then on, so it is replaced by a new connection.
    fn replace_if_unusable(&self, state: &mut State) -> Result<(), DieselError> {
        let conn = sqlite(&mut state.conn);
        let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
        if matches!(status.transaction_depth(), Ok(None)) {
            return Ok(());
        }
        tracing::warn!("the SQLite writer connection was left inside a transaction; reconnecting");
        state.conn = open_writer_connection(&self.url, self.wal_limits).map_err(|error| {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(format!("reopening the SQLite writer connection: {error}")),
            )
        })?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a write is caught inside the lock.
        lock_ignoring_poison(&self.state)
    }

    /// Commits (or rolls back) the open transaction and tells the group's writes.
    fn end_group(&self, state: &mut State, commit: bool) {
        let Some(group) = state.open.take() else {
            return;
        };
        let conn = sqlite(&mut state.conn);
        let ended = if commit {
            AnsiTransactionManager::commit_transaction(conn).map_err(|e| CommitFailure::of(&e))
        } else {
            Err(CommitFailure {
                kind: DatabaseErrorKind::Unknown,
                message: "the transaction was abandoned".to_owned(),
            })
        };
        if ended.is_err() {
            // A failed COMMIT can leave the transaction open; nothing of it may stay.
            if let Err(rollback) = AnsiTransactionManager::rollback_transaction(conn)
                && !matches!(rollback, DieselError::NotInTransaction)
            {
                tracing::error!(error = %rollback, "rolling back a failed group commit failed");
            }
        }
        if let Err(failure) = &ended {
            tracing::error!(error = failure.message.as_str(), "a group commit failed");
        }
        let committed = ended.is_ok();
        group.end(ended);
        if committed {
            state.commits += 1;
            self.after_commit(conn, state.commits);
        }
    }

    /// Between two transactions (on the writer's thread): rewinds the WAL when it is too long,
    /// and otherwise asks for a background checkpoint every so many commits.
    fn after_commit(&self, conn: &mut diesel::SqliteConnection, commits: usize) {
        let wal_bytes = std::fs::metadata(&self.wal_path).map_or(0, |wal| wal.len());
        if wal_bytes > self.wal_limits.rewind_past {
            // Waiting for the checkpoint thread means every queued write waits with it, for as
            // long as its sync takes (a few hundred milliseconds): only done where the file must
            // stop growing. It is asked for nothing more until the WAL is rewound, so a later
            // commit usually finds the turn free.
            let _turn = if wal_bytes > self.wal_limits.wait_past {
                lock_ignoring_poison(&self.checkpointing)
            } else {
                match self.checkpointing.try_lock() {
                    Ok(turn) => turn,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => return,
                }
            };
            // With no write appending, the checkpoint can copy the whole WAL, and then the next
            // write starts it over (and journal_size_limit cuts the file back). Passive, as
            // SQLite's own: a reader still using the WAL is not waited for, the WAL only stays
            // long until a later commit finds it free.
            if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::warn!(%error, "an SQLite checkpoint failed; trying again later");
            }
        } else if commits.is_multiple_of(COMMITS_PER_CHECKPOINT) {
            // A checkpoint already asked for covers this one too.
            let _ = self.checkpoint_due.try_send(());
        }
    }
}

/// The writer's connection checkpoints nothing by itself (the checkpoint thread does), and the
/// WAL file is cut back to [`WalLimits::rewind_past`] whenever it starts over.
fn open_writer_connection(
    url: &DatabaseUrl,
    wal_limits: WalLimits,
) -> anyhow::Result<DbConnection> {
    let mut conn = open_connection(url)?;
    conn.batch_execute(&format!(
        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {}; PRAGMA temp_store = MEMORY;",
        wal_limits.rewind_past
    ))?;
    Ok(conn)
}

/// The checkpoint thread: copies the WAL into the database file when asked, beside the writes,
/// until the writer is gone.
fn checkpoint_when_due(mut conn: DbConnection, due: Receiver<()>, checkpointing: Arc<Mutex<()>>) {
    while due.recv().is_ok() {
        let _turn = lock_ignoring_poison(&checkpointing);
        if let Err(error) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(%error, "an SQLite checkpoint failed; trying again later");
        }
    }
}

/// How one write's work ended.
enum Work<E> {
    Failed(E),
    Panicked(Box<dyn std::any::Any + Send>),
}

/// What one write's work returned, or how it failed.
type Outcome<T, E> = Result<T, Work<E>>;

prepared_sqlite!(
    /// Opens the savepoint a write's changes live in.
    BeginWrite = "SAVEPOINT write"
);
prepared_sqlite!(
    /// Keeps a write's changes in the group's transaction.
    KeepWrite = "RELEASE write"
);

/// Runs `work` in a savepoint: released if it succeeds, rolled back if it fails or panics. The
/// outer error is the savepoint's own (the connection's state is then unknown).
///
/// Opened and released by statements the connection keeps prepared, not through diesel's
/// transaction manager, which prepares each anew (a tenth of the writer's time); its record
/// of the connection stays at the group's transaction, so a `transaction` inside `work` nests.
fn savepoint<T, E, F>(conn: &mut DbConnection, work: F) -> Result<Outcome<T, E>, DieselError>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
{
    BeginWrite.execute(sqlite(conn))?;
    let outcome = match catch_unwind(AssertUnwindSafe(|| work(&mut Tx { conn: &mut *conn }))) {
        Ok(Ok(value)) => {
            KeepWrite.execute(sqlite(conn))?;
            return Ok(Ok(value));
        }
        Ok(Err(error)) => Work::Failed(error),
        Err(panic) => Work::Panicked(panic),
    };
    sqlite(conn).batch_execute("ROLLBACK TO write; RELEASE write")?;
    Ok(Err(outcome))
}

fn sqlite(conn: &mut DbConnection) -> &mut diesel::SqliteConnection {
    let DbConnection::Sqlite(conn) = conn else {
        unreachable!("the writer holds an SQLite connection");
    };
    conn
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// Small limits, so that a test fills the WAL past them quickly.
    const TEST_LIMITS: WalLimits = WalLimits {
        rewind_past: 1024 * 1024,
        wait_past: 4 * 1024 * 1024,
    };

    struct Fixture {
        /// Removed with the fixture, its database with it.
        _dir: tempfile::TempDir,
        url: DatabaseUrl,
        writer: Arc<SqliteWriter>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let url = DatabaseUrl::parse(&format!("sqlite://{}/writer.db", dir.path().display()))
                .unwrap();
            let mut conn = open_connection(&url).unwrap();
            conn.batch_execute("CREATE TABLE rows (name TEXT PRIMARY KEY NOT NULL)")
                .unwrap();
            let writer = SqliteWriter::open_with(&url, TEST_LIMITS).unwrap();
            Fixture {
                _dir: dir,
                url,
                writer,
            }
        }

        fn wal(&self) -> &std::path::Path {
            &self.writer.wal_path
        }

        /// Whether another connection sees the row: whether it is committed.
        fn committed(&self, name: &str) -> bool {
            diesel::sql_query("SELECT count(*) AS n FROM rows WHERE name = ?")
                .bind::<diesel::sql_types::Text, _>(name)
                .get_result::<Count>(&mut open_connection(&self.url).unwrap())
                .unwrap()
                .n
                == 1
        }
    }

    fn insert(conn: &mut DbConnection, name: &str) -> QueryResult<usize> {
        diesel::sql_query("INSERT INTO rows (name) VALUES (?)")
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(conn)
    }

    /// The first write holds the connection until a second is queued, so both land in one group;
    /// the second ends as `second` says. Returns what the first write returned and whether its
    /// row was committed by the time it returned.
    fn group_of_two(
        fixture: &Arc<Fixture>,
        second: impl FnOnce(&mut Tx<'_>) -> QueryResult<usize> + Send + 'static,
    ) -> (QueryResult<usize>, bool, thread::Result<QueryResult<usize>>) {
        let (running, first_is_running) = mpsc::channel();
        let first = {
            let fixture = fixture.clone();
            thread::spawn(move || {
                let result = fixture.writer.write(|conn| {
                    let inserted = insert(conn, "first")?;
                    running.send(()).unwrap();
                    while fixture.writer.queued.load(Ordering::SeqCst) == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                    Ok::<_, DieselError>(inserted)
                });
                (result, fixture.committed("first"))
            })
        };
        first_is_running.recv().unwrap();
        let second = {
            let fixture = fixture.clone();
            thread::spawn(move || fixture.writer.write(second))
        };
        let second = second.join();
        let (first, first_committed) = first.join().unwrap();
        (first, first_committed, second)
    }

    #[test]
    fn queued_writes_share_a_commit_and_are_answered_after_it() {
        let fixture = Arc::new(Fixture::new());
        let watcher = fixture.clone();
        let (first, first_committed, second) = group_of_two(&fixture, move |conn| {
            // The first write's transaction is still open: the two will commit as one.
            assert!(!watcher.committed("first"));
            insert(conn, "second")
        });
        assert_eq!(first.unwrap(), 1);
        assert_eq!(second.unwrap().unwrap(), 1);
        // The first write waited for the second: it is answered only once its row is committed.
        assert!(first_committed);
        assert!(fixture.committed("second"));
    }

    #[test]
    fn a_failed_write_undoes_only_its_own_changes() {
        let fixture = Arc::new(Fixture::new());
        let (first, first_committed, second) = group_of_two(&fixture, |conn| {
            insert(conn, "second")?;
            // A unique violation: the write fails after changing something.
            insert(conn, "first")
        });
        assert_eq!(first.unwrap(), 1);
        assert!(second.unwrap().is_err());
        assert!(first_committed);
        assert!(!fixture.committed("second"));
    }

    #[test]
    fn a_panicking_write_undoes_only_its_own_changes() {
        let fixture = Arc::new(Fixture::new());
        let (first, first_committed, second) = group_of_two(&fixture, |conn| {
            insert(conn, "second").unwrap();
            panic!("a bug in a write");
        });
        assert_eq!(first.unwrap(), 1);
        assert!(second.is_err(), "the panic reaches the writer's caller");
        assert!(first_committed);
        assert!(!fixture.committed("second"));
        // The connection is usable after the panic.
        assert_eq!(
            fixture.writer.write(|conn| insert(conn, "third")).unwrap(),
            1
        );
        assert!(fixture.committed("third"));
    }

    #[test]
    fn a_connection_left_inside_a_transaction_is_replaced() {
        let fixture = Fixture::new();
        {
            let mut state = fixture.writer.lock();
            AnsiTransactionManager::begin_transaction(sqlite(&mut state.conn)).unwrap();
            insert(&mut state.conn, "stranded").unwrap();
        }
        assert_eq!(
            fixture.writer.write(|conn| insert(conn, "after")).unwrap(),
            1
        );
        assert!(fixture.committed("after"));
        assert!(!fixture.committed("stranded"));
    }

    /// Rows a test writes, larger than a page so that a few of them fill the WAL.
    const ROW_BYTES: usize = 32 * 1024;

    /// Writes a row, returning the WAL file's length once it is committed.
    fn write_row(fixture: &Fixture, name: &str) -> u64 {
        let name = format!("{name}-{}", "x".repeat(ROW_BYTES));
        fixture.writer.write(|conn| insert(conn, &name)).unwrap();
        std::fs::metadata(fixture.wal()).map_or(0, |wal| wal.len())
    }

    /// Writes `rows` rows one at a time, sending the WAL file's length after each.
    fn write_rows(fixture: &Fixture, prefix: &str, rows: usize, wal_lengths: &mpsc::Sender<u64>) {
        for n in 0..rows {
            let length = write_row(fixture, &format!("{prefix}-{n}"));
            // The receiver may have stopped listening.
            let _ = wal_lengths.send(length);
        }
    }

    /// Rows enough to write at least `bytes` to the WAL.
    fn rows_for(bytes: u64) -> usize {
        bytes as usize / ROW_BYTES
    }

    #[test]
    fn a_reader_holding_the_wal_does_not_hold_up_writes() {
        let fixture = Fixture::new();
        fixture.writer.write(|conn| insert(conn, "first")).unwrap();
        // A reader (a backup, an operator's sqlite3 shell) keeps a snapshot that needs the WAL.
        let mut reader = open_connection(&fixture.url).unwrap();
        reader
            .batch_execute("BEGIN; SELECT count(*) FROM rows;")
            .unwrap();
        let started = std::time::Instant::now();
        let (wal_lengths, _) = mpsc::channel();
        // Past both limits: neither makes a write wait for the reader.
        write_rows(
            &fixture,
            "row",
            rows_for(2 * TEST_LIMITS.wait_past),
            &wal_lengths,
        );
        // Waiting for the reader (up to the 5 s busy timeout a write) would take minutes.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        reader.batch_execute("COMMIT").unwrap();
    }

    #[test]
    fn a_long_background_checkpoint_does_not_hold_up_writes() {
        let fixture = Arc::new(Fixture::new());
        // The checkpoint thread's turn, held as by a checkpoint whose sync takes long.
        let background = fixture.writer.checkpointing.lock().unwrap();
        let (done, finished) = mpsc::channel();
        let writes = {
            let fixture = fixture.clone();
            thread::spawn(move || {
                // Past the rewind limit (and, a row being far smaller, short of the wait limit).
                for n in 0.. {
                    if write_row(&fixture, &format!("row-{n}")) > TEST_LIMITS.rewind_past {
                        break;
                    }
                }
                done.send(()).unwrap();
            })
        };
        // A writer that waited for the turn would wait until it is given back.
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("the writes waited for the checkpoint thread");
        drop(background);
        writes.join().unwrap();
        // Once the turn is free, a write rewinds the WAL and the file is cut back to the limit.
        let started = std::time::Instant::now();
        for n in 0.. {
            if write_row(&fixture, &format!("after-{n}")) <= TEST_LIMITS.rewind_past {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the WAL was never rewound"
            );
        }
    }

    #[test]
    fn past_the_wait_limit_writes_wait_for_the_background_checkpoint() {
        let fixture = Arc::new(Fixture::new());
        let background = fixture.writer.checkpointing.lock().unwrap();
        let (wal_lengths, lengths) = mpsc::channel();
        let writes = {
            let fixture = fixture.clone();
            let rows = rows_for(2 * TEST_LIMITS.wait_past);
            thread::spawn(move || write_rows(&fixture, "row", rows, &wal_lengths))
        };
        // The writes go on until the WAL is past the wait limit and then stop while the
        // background checkpoint runs. A stop can only be seen as nothing more arriving; with
        // nothing to stop them, all of these writes take a few hundred milliseconds.
        let answered = std::iter::from_fn(|| lengths.recv_timeout(Duration::from_secs(2)).ok());
        let rows_answered = answered.count();
        // The write that went past the limit waits too: it is answered after its rewind.
        let held_length = std::fs::metadata(fixture.wal()).unwrap().len();
        let row_wal_bytes = held_length / (rows_answered as u64 + 1);
        assert!(held_length > TEST_LIMITS.wait_past);
        assert!(
            held_length <= TEST_LIMITS.wait_past + row_wal_bytes,
            "the WAL grew to {held_length} bytes during a background checkpoint"
        );
        drop(background);
        writes.join().unwrap();
    }

    #[test]
    fn the_wal_stays_bounded_under_a_steady_write_load() {
        const WRITERS: usize = 8;
        let fixture = Arc::new(Fixture::new());
        let first = write_row(&fixture, "first");
        let row_wal_bytes = write_row(&fixture, "second") - first;
        // Four times the wait limit, written by writers that keep the connection busy throughout.
        let rows_each = rows_for(4 * TEST_LIMITS.wait_past).div_ceil(WRITERS);
        let (wal_lengths, lengths) = mpsc::channel();
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (fixture, wal_lengths) = (fixture.clone(), wal_lengths.clone());
                thread::spawn(move || {
                    write_rows(&fixture, &writer.to_string(), rows_each, &wal_lengths)
                })
            })
            .collect();
        drop(wal_lengths);
        let longest = lengths.iter().max().unwrap();
        writers
            .into_iter()
            .for_each(|writer| writer.join().unwrap());
        // Past the wait limit by at most what one group of writes adds before the writer waits.
        let one_group = MAX_GROUP as u64 * row_wal_bytes;
        assert!(
            longest <= TEST_LIMITS.wait_past + one_group,
            "the WAL grew to {longest} bytes"
        );
    }
}
