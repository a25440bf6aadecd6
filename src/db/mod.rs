//! The store: one diesel connection type over SQLite and PostgreSQL, its pool, embedded migrations
//! and the write handle every write goes through ([`Conn::write`], [`Tx`]).
//!
//! Storage code returns `QueryResult` or [`StoreError`]; each capability maps those to its own error
//! type, so a database "not found" becomes that capability's 404 and pool exhaustion a 503.

pub mod any_of;
pub mod budget;
pub mod changes;
pub use changes::Reach;
pub mod memo;
pub mod prepared;
pub mod raw;
pub mod rows;
pub mod schema;
pub mod stored_time;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde::{Deserialize, Serialize};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Held for the length of the migration transaction so that replicas starting together on one
/// PostgreSQL database apply each migration once.
const MIGRATION_LOCK_KEY: i64 = 0x1d6a_7e00_0001;

/// Applied to every SQLite connection: WAL lets readers run beside the one writer, the busy
/// timeout makes a second writer wait instead of failing, and a case-sensitive LIKE behaves as
/// PostgreSQL's does (SCIM filters lower-case both sides themselves where a match ignores case).
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                              PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                              PRAGMA case_sensitive_like = ON;";

/// How long a request waits for a pooled connection before it is answered 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_SIZE: u32 = 10;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Runs `$body` with `$conn` bound to the backend's own connection, so the query in it is
/// compiled for that backend alone.
///
/// Through [`DbConnection`], diesel renders a query's SQL text on every run, even when the
/// statement is already prepared (it serialises the query to collect its binds); on the requests
/// that run most (the token check, one user's read) that rendering cost as much as the query.
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Postgres($c) => $body,
        }
    };
}

/// Inserts `$rows` (a `&Vec` of insertable rows) into `$table`: on PostgreSQL as one statement,
/// one round trip for them all; on SQLite as one kept single-row statement per row, since diesel
/// runs a multi-row insert there as one insert per row in a savepoint of its own, rendering each
/// row's SQL anew. A `QueryResult<()>`.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite(conn) => $rows.iter().try_for_each(|row| {
                diesel::insert_into($table)
                    .values(row)
                    .execute(conn)
                    .map(drop)
            }),
            $crate::db::DbConnection::Postgres(_) if $rows.is_empty() => Ok(()),
            $crate::db::DbConnection::Postgres(conn) => diesel::insert_into($table)
                .values($rows)
                .execute(conn)
                .map(drop),
        }
    };
}

/// Runs `$run` with `$q` bound to `$query` restricted to rows whose `$column` (text) is one of
/// `$values` (a slice), and `$c` to the backend's own connection. SQLite
/// prepares a statement with an `IN` list anew on every run, so one value, the usual case on the
/// hot paths (one user's groups, one member's roles), is asked with `=`, a statement that stays
/// prepared. PostgreSQL is given a list in the form that goes by the column's index whatever its
/// statistics (see [`any_of`]).
#[macro_export]
macro_rules! where_in {
    ($conn:expr, $query:expr, $column:expr, $values:expr, |$q:ident, $c:ident| $run:expr) => {
        match (&mut *$conn, $values) {
            (conn, [value]) => {
                let $q = $query.filter($column.eq(value));
                $crate::with_backend!(conn, |$c| $run)
            }
            ($crate::db::DbConnection::Sqlite($c), values) => {
                let $q = $query.filter($column.eq_any(values));
                $run
            }
            ($crate::db::DbConnection::Postgres($c), values) => {
                let $q = $query.filter($crate::db::any_of::any_of($column, values));
                $run
            }
        }
    };
}

/// Loads `$query` restricted to rows whose `$column` is one of `$values` (see [`where_in!`]).
#[macro_export]
macro_rules! load_where_in {
    ($conn:expr, $query:expr, $column:expr, $values:expr) => {
        $crate::where_in!($conn, $query, $column, $values, |query, conn| query
            .load(conn))
    };
}

/// A constant tuple of columns to `select`, written once: Rust wants a constant's type spelled
/// out, and for a tuple of columns that is the same list again.
/// `columns!(MEMBER_COLUMNS = (users::id, users::name));`
#[macro_export]
macro_rules! columns {
    ($name:ident = ($($column:path),+ $(,)?)) => {
        const $name: ($($column,)+) = ($($column,)+);
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A validated database URL: `sqlite://PATH` or `postgres://...` (`postgresql://` too).
/// Its `Display` and `Debug` hide any password, so it can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path == ":memory:" {
                return Err(format!(
                    "database URL {url:?} names no file: use sqlite://PATH (every pooled connection \
                     needs the same database)"
                ));
            }
            return Ok(Self {
                url: url.to_owned(),
                backend: Backend::Sqlite,
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url)
                .map_err(|e| format!("database URL is not a valid PostgreSQL URL: {e}"))?;
            if parsed.host_str().is_none_or(str::is_empty)
                && !parsed.query_pairs().any(|(k, _)| k == "host")
            {
                return Err("database URL names no PostgreSQL host".to_owned());
            }
            return Ok(Self {
                url: url.to_owned(),
                backend: Backend::Postgres,
            });
        }
        Err(format!(
            "database URL must start with sqlite:// or postgres://, got {:?}",
            redact(url)
        ))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection string for the driver; never log this.
    pub fn expose(&self) -> &str {
        &self.url
    }

    fn sqlite_path(&self) -> &str {
        self.url.strip_prefix("sqlite://").unwrap_or(&self.url)
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        Self::parse(&url)
    }
}

impl From<DatabaseUrl> for String {
    fn from(url: DatabaseUrl) -> String {
        url.url
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// Opens connections of the backend the URL names. diesel's own `MultiConnection::establish`
/// tries each backend in turn and hides the real error, so the backend is picked here instead.
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        match self.url.backend {
            Backend::Sqlite => {
                create_private(self.url.sqlite_path())
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                let mut conn = diesel::SqliteConnection::establish(self.url.sqlite_path())?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .and_then(|()| budget::register(&mut conn))
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
            Backend::Postgres => {
                // libpq would initialise OpenSSL with a handler that frees it at exit, under any
                // thread still connecting or reading: the process crashed as it exited. Ours
                // comes first and leaves it (only the first initialisation decides).
                openssl::init();
                Ok(DbConnection::Postgres(diesel::PgConnection::establish(
                    self.url.expose(),
                )?))
            }
        }
    }

    /// Finds a PostgreSQL connection that its server or the network closed without a query: it
    /// reads what the socket holds (nothing, while the connection is idle and alive), where a
    /// test query cost a round trip on every checkout. A server ending a connection sends an
    /// error and then closes it; libpq takes an error that comes while idle as a notice, so the
    /// first read consumes the error and only the second sees the close. An SQLite file
    /// connection does not die.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        match conn {
            DbConnection::Postgres(conn) => {
                for _ in 0..2 {
                    if let Some(Err(error)) = conn.notifications_iter().next() {
                        return Err(ConnectionError::CouldntSetupConfiguration(error));
                    }
                }
                Ok(())
            }
            DbConnection::Sqlite(_) => Ok(()),
        }
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// What storage code reports upward. Capabilities wrap it in their own error type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Query(#[source] DieselError),
    #[error("the database task did not complete")]
    TaskFailed,
    /// A stored value that no longer reads (a key that will not parse): the detail is logged.
    #[error("stored data cannot be used")]
    Corrupt(String),
    /// A query the client shaped ran past its time budget (see [`budget`]).
    #[error(
        "the query would take longer than this service allows: use fewer or simpler conditions"
    )]
    OverBudget,
    /// The workspace already runs as many budgeted queries as it may at once.
    #[error("this workspace already runs as many costly queries as it may at once: try again")]
    CostlyQueriesRunning,
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => StoreError::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                StoreError::Unavailable(Box::new(error))
            }
            DieselError::DatabaseError(_, ref info)
                if info
                    .message()
                    .contains("canceling statement due to statement timeout") =>
            {
                StoreError::OverBudget
            }
            // SQLite reports a busy timeout as a generic error; it is load, not a fault.
            DieselError::DatabaseError(_, ref info)
                if info.message().contains("database is locked") =>
            {
                StoreError::Unavailable(Box::new(error))
            }
            other => StoreError::Query(other),
        }
    }
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Creates the SQLite file readable and writable by its owner only, when it does not exist yet:
/// it holds token hashes, session keys and the SP's private keys. SQLite gives its WAL and
/// shared-memory files the database's permissions.
fn create_private(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        opened => opened.map(drop),
    }
}

/// The pool every part of idgate reaches the database through, the connection that watches for
/// changes (see [`changes`]), and on SQLite the one connection its writes share (see
/// `writer.rs`).
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionManager>,
    sqlite_writer: Option<Arc<writer::SqliteWriter>>,
    changes: Arc<changes::ChangeWatch>,
}

impl Store {
    /// Connects, applies pending migrations and builds the pool.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<Store> {
        run_migrations(&mut open_connection(url)?)?;
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // A PostgreSQL connection can die with its server or the network: see `is_valid`.
            .test_on_check_out(true)
            .build(ConnectionManager { url: url.clone() })
            .map_err(|e| anyhow::anyhow!("cannot connect to database {url}: {}", one_line(&e)))?;
        let sqlite_writer = match url.backend {
            Backend::Sqlite => Some(writer::SqliteWriter::open(url)?),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            sqlite_writer,
            changes: changes::ChangeWatch::open(url)?,
        })
    }

    /// The version of the database to read at and keep what was read under (see [`memo`]);
    /// None where nothing may be kept. Asked on the caller's thread: it never waits.
    pub fn data_version(&self) -> Option<memo::DataVersion> {
        self.changes.version()
    }

    /// [`Store::data_version`] for what only tokens and workspaces hold: a token's check (see
    /// [`changes`]).
    pub fn credentials_version(&self) -> Option<memo::DataVersion> {
        self.changes.credentials_version()
    }

    pub fn backend(&self) -> Backend {
        match self.sqlite_writer {
            Some(_) => Backend::Sqlite,
            None => Backend::Postgres,
        }
    }

    /// Runs blocking storage code that reads and may then write (through [`Conn::write`]) on
    /// actix's blocking thread pool.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        actix_web::web::block(move || work(&mut store.checkout()?))
            .await
            .map_err(|_| E::from(StoreError::TaskFailed))?
    }

    /// Runs blocking storage code that only reads, on actix's blocking thread pool.
    pub async fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || work(&mut *checkout(&pool)?))
            .await
            .map_err(|_| E::from(StoreError::TaskFailed))?
    }

    /// Runs `work` in a transaction that may write (see [`Conn::write`]) from actix's blocking
    /// thread pool. On SQLite no pooled connection is taken: the writer has its own.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<DieselError> + Send + 'static,
    {
        self.write_and_tell(work, true).await
    }

    /// [`Store::write`] for a write to tables no memo reads (the replicas' heartbeat): neither
    /// this process nor the other replicas are told of it, so what their memos keep outlives it.
    /// Told, a heartbeat every two seconds made every replica drop its kept pages' counts, and
    /// count a large workspace again from 16 connections at once. (A SQLite change watch sees
    /// every other connection's commit whatever it is told; nothing beats on SQLite.)
    pub async fn write_untold<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<DieselError> + Send + 'static,
    {
        self.write_and_tell(work, false).await
    }

    async fn write_and_tell<T, E, F>(&self, work: F, tell: bool) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + From<DieselError> + Send + 'static,
    {
        match self.sqlite_writer.clone() {
            Some(writer) => {
                let changes = self.changes.clone();
                actix_web::web::block(move || {
                    let written = writer.write(work)?;
                    if tell {
                        changes.committed(Reach::Anything);
                    }
                    Ok(written)
                })
                .await
                .map_err(|_| E::from(StoreError::TaskFailed))?
            }
            None if tell => self.run(move |conn| conn.write(work)).await,
            None => self.run(move |conn| own_transaction(conn, work)).await,
        }
    }

    /// Sets the pool's and the writer's gauges in `/metrics` to what they are now.
    pub fn report_gauges(&self) {
        let metrics = crate::metrics::metrics();
        let state = self.pool.state();
        let in_use = state.connections - state.idle_connections;
        for (label, count) in [("idle", state.idle_connections), ("in_use", in_use)] {
            metrics
                .pool_connections
                .with_label_values(&[label])
                .set(i64::from(count));
        }
        let queued = self
            .sqlite_writer
            .as_ref()
            .map_or(0, |writer| writer.queued());
        metrics
            .writer_queue
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    fn checkout(&self) -> Result<Conn, StoreError> {
        Ok(Conn {
            held: Held::Pooled(checkout(&self.pool)?),
            writer: self.sqlite_writer.clone(),
            changes: Some(self.changes.clone()),
        })
    }

    /// Streams a large read in batches, each loaded in its own blocking task, so that neither the
    /// whole result nor a connection is held while the client reads. `batch` gets the cursor the
    /// previous batch returned (None for the first) and returns the bytes to send and the cursor to
    /// go on from, or None after the last batch. An error ends the stream.
    pub fn stream_batches<C, E, F>(
        &self,
        batch: F,
    ) -> impl futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + 'static
    where
        C: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: Fn(&mut DbConnection, Option<C>) -> Result<(actix_web::web::Bytes, Option<C>), E>
            + Clone
            + Send
            + 'static,
    {
        let store = self.clone();
        // The state is the cursor to load from: Some(None) first, None once the last batch is out.
        futures_util::stream::unfold(Some(None), move |state: Option<Option<C>>| {
            let (store, batch) = (store.clone(), batch.clone());
            async move {
                let cursor = state?;
                match store.read(move |conn| batch(conn, cursor)).await {
                    Ok((bytes, next)) => Some((Ok(bytes), next.map(Some))),
                    Err(error) => Some((Err(error), None)),
                }
            }
        })
    }
}

fn checkout(
    pool: &Pool<ConnectionManager>,
) -> Result<PooledConnection<ConnectionManager>, StoreError> {
    pool.get().map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// Opens one connection of its own, outside any pool and writer (the CLI, tools): its writes
/// are transactions of their own. The error says why: a bad path, an unreachable server, a
/// refused login.
pub fn connect(url: &DatabaseUrl) -> anyhow::Result<Conn> {
    Ok(Conn {
        held: Held::Own(open_connection(url)?),
        writer: None,
        changes: None,
    })
}

fn open_connection(url: &DatabaseUrl) -> anyhow::Result<DbConnection> {
    ConnectionManager { url: url.clone() }
        .connect()
        .map_err(|e| anyhow::anyhow!("cannot connect to database {url}: {}", one_line(&e)))
}

/// Applies pending migrations in one transaction and returns the names of those applied.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<Vec<String>> {
    let applied = match conn {
        DbConnection::Sqlite(conn) => {
            conn.immediate_transaction(|conn| apply(conn, SQLITE_MIGRATIONS))
        }
        DbConnection::Postgres(conn) => conn.transaction(|conn| {
            diesel::sql_query(format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .execute(conn)?;
            apply(conn, POSTGRES_MIGRATIONS)
        }),
    };
    applied.map_err(|e| anyhow::anyhow!("cannot apply database migrations: {}", one_line(&*e)))
}

type MigrationError = Box<dyn std::error::Error + Send + Sync>;

fn apply<C, B>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, MigrationError>
where
    C: MigrationHarness<B>,
    B: diesel::backend::Backend,
{
    // Run one by one rather than with `run_pending_migrations`, which reports bare versions:
    // the operator is shown full names such as `2026-11-22-000001_foundation`.
    let mut applied = Vec::new();
    for migration in conn.pending_migrations(migrations)? {
        conn.run_migration(&*migration)?;
        applied.push(migration.name().to_string());
    }
    Ok(applied)
}

/// A connection held for one piece of work. It reads directly (it dereferences to the
/// [`DbConnection`]) and writes only through [`Conn::write`], the one place a [`Tx`] is made
/// outside the SQLite writer: so every function that writes says so by taking a `Tx`, and none
/// can write around the writer.
pub struct Conn {
    held: Held,
    /// On SQLite, inside a [`Store`]: the store's writer, which every write goes through.
    writer: Option<Arc<writer::SqliteWriter>>,
    /// Inside a [`Store`]: told of each commit made here. Outside one, a commit is announced on
    /// the connection itself.
    changes: Option<Arc<changes::ChangeWatch>>,
}

enum Held {
    Pooled(PooledConnection<ConnectionManager>),
    Own(DbConnection),
}

impl std::ops::Deref for Conn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        match &self.held {
            Held::Pooled(conn) => conn,
            Held::Own(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        match &mut self.held {
            Held::Pooled(conn) => conn,
            Held::Own(conn) => conn,
        }
    }
}

impl Conn {
    /// Runs `work` in a transaction that may write, and returns once that transaction has
    /// committed (or `work`'s error once its changes are undone).
    ///
    /// Inside a [`Store`] on SQLite, the write runs on the store's writer thread (hence `Send`)
    /// and shares a commit with the writes queued beside it. Elsewhere (the CLI, PostgreSQL) it is
    /// a transaction of its own on this connection; on SQLite it begins with `BEGIN IMMEDIATE`: a
    /// deferred transaction that reads and then writes fails at once with SQLITE_BUSY when
    /// another writer got in first (the busy timeout does not cover that upgrade), while an
    /// immediate one waits its turn. Other processes learn of the commit (see [`changes`]).
    pub fn write<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send,
        T: Send,
        E: From<DieselError> + Send,
    {
        let written = match &self.writer {
            Some(writer) => writer.write(work)?,
            None => own_transaction(self, work)?,
        };
        self.announce_commit(Reach::Anything);
        Ok(written)
    }

    /// [`Conn::write`] for a write that `work` makes in one statement: on PostgreSQL the
    /// statement is its own transaction, so no BEGIN or COMMIT crosses the socket and the rows it
    /// locks are held only while it runs, not for round trips. On SQLite it is a transaction like
    /// any other (through the writer inside a [`Store`]). `work` must make no other write, and
    /// write nothing beyond `reach`.
    pub fn write_in_one_statement<T, E, F>(&mut self, reach: Reach, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<T, E> + Send,
        T: Send,
        E: From<DieselError> + Send,
    {
        let written = match self.writer.clone() {
            Some(writer) => writer.write(work)?,
            None => match &mut **self {
                conn @ DbConnection::Postgres(_) => work(&mut Tx { conn })?,
                conn => own_transaction(conn, work)?,
            },
        };
        self.announce_commit(reach);
        Ok(written)
    }

    fn announce_commit(&mut self, reach: Reach) {
        match &self.changes {
            Some(changes) => changes.committed(reach),
            None => {
                if let Err(error) = changes::announce(self, reach) {
                    tracing::warn!(%error, "a commit was made but could not be announced to the replicas");
                }
            }
        }
    }
}

/// A connection inside a transaction that may write. Only this module makes one (through
/// [`Conn::write`], [`Store::write`] or the SQLite writer); a function that writes takes
/// `&mut Tx`, and reads on it as on any connection, by dereference.
pub struct Tx<'c> {
    conn: &'c mut DbConnection,
}

impl Tx<'_> {
    /// The connection, for diesel's query methods (which do not dereference).
    pub fn conn(&mut self) -> &mut DbConnection {
        self.conn
    }

    /// The connection, for a statement written for PostgreSQL alone; on SQLite, an error.
    pub fn postgres(&mut self) -> QueryResult<&mut diesel::PgConnection> {
        match self.conn {
            DbConnection::Postgres(conn) => Ok(conn),
            DbConnection::Sqlite(_) => Err(DieselError::QueryBuilderError(
                "this statement is written for PostgreSQL".into(),
            )),
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        self.conn
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut DbConnection {
        self.conn
    }
}

/// A transaction of its own on `conn`, committed when `work` succeeds.
fn own_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut Tx<'_>) -> Result<T, E>,
    E: From<DieselError>,
{
    type Manager = <DbConnection as diesel::Connection>::TransactionManager;
    match conn {
        DbConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgres(_) => Manager::begin_transaction(conn)?,
    }
    match work(&mut Tx { conn: &mut *conn }) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = Manager::rollback_transaction(conn) {
                tracing::error!(error = %rollback, "rolling back a failed transaction failed");
            }
            Err(error)
        }
    }
}

/// Driver messages can span lines; start-up errors are reported on one.
fn one_line(error: &dyn fmt::Display) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn migration_names(backend: &str) -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let sqlite = migration_names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, migration_names("postgres"));
    }

    #[test]
    fn database_urls_are_checked_and_passwords_hidden() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://idgate.db")
                .unwrap()
                .sqlite_path(),
            "idgate.db"
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///data/idgate.db")
                .unwrap()
                .sqlite_path(),
            "/data/idgate.db"
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("sqlite://:memory:").is_err());
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("idgate.db").is_err());

        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal/idgate").unwrap();
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        let error = DatabaseUrl::parse("mysql://app:s3cret@db/idgate").unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
