//! Every test gets its own database and, where it needs one, its own server on a free port.
//! Tests run on SQLite always, and on PostgreSQL too when `IDGATE_TEST_POSTGRES_URL` is set: each
//! then gets a fresh schema of that database, dropped when the test ends.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use idgate::app::Application;
use idgate::audit::AuditContext;
use idgate::config::{BaseUrl, Settings};
use idgate::db::{self, Backend, Conn, DatabaseUrl};
use idgate::permissions::Scopes;
use idgate::time::Clock;
use idgate::tokens::{self, NewToken};
use idgate::workspaces::{self, NewWorkspace, Workspace};
use serde_json::Value;

pub const POSTGRES_ENV: &str = "IDGATE_TEST_POSTGRES_URL";

/// Runs each named `async fn(TestDatabase)` once on SQLite and once on PostgreSQL, as
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::TestDatabase::sqlite()).await
            }

            #[actix_web::test]
            async fn postgres() {
                if let Some(database) = $crate::helpers::TestDatabase::postgres() {
                    super::$name(database).await
                }
            }
        }
    )*};
}

pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    /// Drops the PostgreSQL schema, or removes the SQLite directory, when the test ends.
    _cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl TestDatabase {
    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("idgate.db").display());
        TestDatabase {
            url,
            backend: Backend::Sqlite,
            _cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// None when PostgreSQL tests are not configured; in CI that is a failure, not a skip.
    pub fn postgres() -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{POSTGRES_ENV} must be set in CI"
            );
            eprintln!("skipped: set {POSTGRES_ENV} to run this test on PostgreSQL");
            return None;
        };
        // Before libpq's, as idgate's own connections do (see `idgate::db`): libpq's would free
        // OpenSSL as the test binary exits, under the servers' threads still connecting.
        openssl::init();
        let schema = format!("idgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin =
            PgConnection::establish(&admin_url).expect("connect to the test PostgreSQL server");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("create a test schema");
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-csearch_path%3D{schema}");
        Some(TestDatabase {
            url,
            backend: Backend::Postgres,
            _cleanup: Cleanup::Postgres { admin_url, schema },
        })
    }

    /// The same database reached at another URL (through a proxy, say).
    pub fn reached_at(mut self, url: String) -> TestDatabase {
        self.url = url;
        self
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::parse(&self.url).expect("test URLs are valid")
    }

    /// A connection with migrations applied, for setting up and inspecting state.
    pub fn connect(&self) -> Conn {
        let mut conn = db::connect(&self.database_url()).expect("connect to the test database");
        db::run_migrations(&mut conn).expect("migrations apply");
        conn
    }

    /// SQL for this backend, run as is (tests that need to break or inspect the schema).
    pub fn execute(&self, sql: &str) -> Result<(), diesel::result::Error> {
        self.connect().batch_execute(sql)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, schema } = self
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: awc::Client,
    pub database: TestDatabase,
    /// The server's clock: a test moves it forward to live through session lifetimes.
    pub clock: Clock,
}

/// A workspace made for a test, with a token holding the scopes asked for.
pub struct Tenant {
    pub workspace: Workspace,
    pub token_id: String,
    pub token: String,
}

impl TestApp {
    /// A server without rate limits: tests send bursts that are not what they test.
    pub async fn spawn(database: TestDatabase) -> TestApp {
        Self::spawn_with_rate_limit(database, 0).await
    }

    pub async fn spawn_with_rate_limit(database: TestDatabase, rate_limit: u32) -> TestApp {
        Self::spawn_with(database, |settings| settings.rate_limit = rate_limit).await
    }

    /// A server with the test's settings changed as `change` says.
    pub async fn spawn_with(database: TestDatabase, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database.database_url(),
            rate_limit: 0,
            ..Settings::default()
        };
        change(&mut settings);
        let clock = Clock::default();
        let app =
            Application::build_with_clock(&settings, clock.clone()).expect("the server starts");
        let address = SocketAddr::from(([127, 0, 0, 1], app.port()));
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            address,
            client: awc::Client::default(),
            database,
            clock,
        }
    }

    /// Starts a second server on this test's database, as a replica would run (behind the same
    /// public base URL as this one), and returns its own address.
    pub async fn spawn_replica(&self) -> String {
        self.spawn_replica_with_rate_limit(0).await
    }

    pub async fn spawn_replica_with_rate_limit(&self, rate_limit: u32) -> String {
        self.start_replica(self.database.database_url(), rate_limit)
            .await
    }

    /// [`TestApp::spawn_replica`] reaching the database at `url` (another URL for the same
    /// database: with another `application_name`, say).
    pub async fn spawn_replica_at(&self, url: DatabaseUrl) -> String {
        self.start_replica(url, 0).await
    }

    async fn start_replica(&self, database_url: DatabaseUrl, rate_limit: u32) -> String {
        let settings = Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            base_url: Some(BaseUrl::parse(&self.url("")).expect("a valid base URL")),
            rate_limit,
            ..Settings::default()
        };
        let app = Application::build(&settings).expect("the replica starts");
        let port = app.port();
        actix_web::rt::spawn(app.run_until_stopped());
        format!("http://127.0.0.1:{port}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Makes a workspace and a token for it, as an operator would with the CLI.
    pub fn tenant(&self, slug: &str, scopes: &str) -> Tenant {
        let mut conn = self.database.connect();
        let workspace = workspace(&mut conn, slug);
        let issued = self.token_for(&workspace, scopes);
        Tenant {
            workspace,
            token_id: issued.token.id,
            token: issued.secret,
        }
    }

    pub fn token_for(&self, workspace: &Workspace, scopes: &str) -> tokens::IssuedToken {
        let new = NewToken {
            name: None,
            scopes: Scopes::parse(scopes).expect("valid scopes"),
            lifetime: None,
            minted_by: None,
            setup_link_id: None,
        };
        tokens::create(
            &mut self.database.connect(),
            workspace,
            new,
            &AuditContext::cli(),
        )
        .expect("create a token")
    }

    /// GET with a bearer token; returns the status and the JSON body (Null when there is none).
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        read(request.send().await.expect("the server answers")).await
    }

    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        let method =
            actix_web::http::Method::from_bytes(method.as_bytes()).expect("a valid method");
        let request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        read(request.send_json(body).await.expect("the server answers")).await
    }

    /// Runs the `idgate` binary against this test's database.
    pub async fn cli(&self, args: &[&str]) -> Output {
        run_cli(args, &self.database.url).await
    }
}

pub async fn read(
    mut response: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
        + Unpin,
    >,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.body().await.expect("a readable body");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("a JSON body")
    };
    (status, json)
}

/// Runs `idgate ARGS --database-url URL` in an empty directory with no `IDGATE_*` settings in its
/// environment, so that nothing but the arguments configures it.
pub async fn run_cli(args: &[&str], database_url: &str) -> Output {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.extend(["--database-url".to_owned(), database_url.to_owned()]);
    run_binary(all, Vec::new()).await
}

pub async fn run_binary(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    actix_web::rt::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_idgate"));
        command.args(&args).current_dir(dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("IDGATE_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.envs(env).output().expect("the idgate binary runs")
    })
    .await
    .expect("the CLI task completes")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

/// Asserts that a command failed with exactly one line on stderr, and returns that line.
pub fn failure_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout: {}",
        stdout(output)
    );
    let stderr = stderr(output);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of reason, got: {stderr}");
    lines[0].to_owned()
}

/// Asks `holds` again and again until it is true, and returns how long that took: what one server
/// committed must be seen by another within a second (its change watch polls SQLite's data
/// version, or hears PostgreSQL's notification). Fails the test past that. Run with
/// `--nocapture` to see the figure.
pub async fn seen_by_replica<F, Fut>(what: &str, mut holds: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let allowed = Duration::from_secs(1);
    let started = Instant::now();
    loop {
        if holds().await {
            let took = started.elapsed();
            eprintln!("{what}: seen by the other server after {took:?}");
            return took;
        }
        let waited = started.elapsed();
        assert!(waited <= allowed, "{what}: not seen after {waited:?}");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the current PostgreSQL transaction did to `tables`: the sum of `counter` (a column of
/// `pg_stat_xact_user_tables`, or a sum of them). The view also holds what the connection's earlier
/// transactions have not yet reported, so a test takes a difference inside one transaction.
pub fn transaction_counter(conn: &mut db::DbConnection, counter: &str, tables: &[&str]) -> i64 {
    use diesel::{QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        counted: i64,
    }
    let tables = tables
        .iter()
        .map(|table| format!("'{table}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let counted: Counted = diesel::sql_query(format!(
        "SELECT coalesce(sum({counter}), 0)::bigint AS counted \
         FROM pg_stat_xact_user_tables WHERE relname IN ({tables})"
    ))
    .get_result(conn)
    .expect("PostgreSQL's statistics of this transaction");
    counted.counted
}

/// A new workspace `slug` (not HIPAA-eligible), made as the CLI makes one.
pub fn workspace(conn: &mut Conn, slug: &str) -> Workspace {
    let new = NewWorkspace {
        slug: slug.to_owned(),
        name: None,
        hipaa: false,
    };
    workspaces::create(conn, new, &AuditContext::cli()).expect("create the workspace")
}
