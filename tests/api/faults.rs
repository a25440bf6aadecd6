//! Losing the database: with PostgreSQL unreachable, requests are answered 503 within the pool's
//! checkout timeout (no hang, no panic), and service resumes by itself when it returns. The
//! outage is a TCP proxy between idgate and PostgreSQL that drops every connection and refuses
//! new ones until it is brought back.
//!
//! Losing connections while the database is up: a replica whose listening connection dies as a
//! change is made through it still gets the change to the other replica within a second, and
//! connections ended while idle in the pool cost no request a 5xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use awc::http::header::COOKIE;
use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::sql_types::{BigInt, Bool, Integer, Text};
use diesel::{Connection, OptionalExtension, PgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use idgate::db::changes::{self, ChangeWatch};
use idgate::db::{DatabaseUrl, Reach};

use crate::helpers::{POSTGRES_ENV, TestApp, TestDatabase, seen_by_replica};
use crate::sso::Sso;

/// Forwards connections to `upstream` while up; when down, cuts them all and refuses new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    /// Runs on a thread of its own: the test thread blocks in synchronous database calls, which
    /// must still get through.
    fn start(upstream: String) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (accepting, cutting) = (up.clone(), cut.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !accepting.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is refused
                    }
                    let (upstream, cutting, open) =
                        (upstream.clone(), cutting.clone(), accepting.clone());
                    actix_web::rt::spawn(async move {
                        // Listening for the cut before looking at the flag: a cut that comes
                        // while this connection is being made is seen one way or the other.
                        let cut = cutting.notified();
                        tokio::pin!(cut);
                        cut.as_mut().enable();
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        if !open.load(Ordering::SeqCst) {
                            return;
                        }
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut => {}
                        }
                    });
                }
            })
        });
        Proxy { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn losing_postgres_gives_503s_and_service_resumes_by_itself() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let address = url::Url::parse(&database.url).unwrap();
    let upstream = format!(
        "{}:{}",
        address.host_str().unwrap(),
        address.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(upstream.clone());
    let proxied = database
        .url
        .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    let app = TestApp::spawn(database.reached_at(proxied)).await;
    let tenant = app.tenant("acme", "scim,workspace:read");
    let status = |path: &'static str| {
        let (app, token) = (&app, tenant.token.clone());
        async move {
            let started = Instant::now();
            let response = app
                .client
                .get(app.url(path))
                .bearer_auth(token)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            (response.unwrap().status().as_u16(), started.elapsed())
        }
    };
    assert_eq!(status("/readyz").await.0, 200);
    assert_eq!(status("/scim/v2/Users").await.0, 200);

    proxy.down();
    for path in ["/readyz", "/scim/v2/Users", "/api/v1/workspaces/acme"] {
        let (code, took) = status(path).await;
        assert_eq!(code, 503, "{path} with the database gone");
        assert!(
            took < Duration::from_secs(12),
            "{path} answered in {took:?}"
        );
    }

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "service did not resume");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status("/scim/v2/Users").await.0, 200);
    assert_eq!(status("/api/v1/workspaces/acme").await.0, 200);
}

/// Two replicas on one PostgreSQL database, `here` (the one changes are made through) and
/// `there`, each naming its connections with an `application_name` of its own.
struct Replicas {
    sso: Sso,
    there: String,
    here_name: String,
    there_name: String,
    admin: PgConnection,
}

impl Replicas {
    async fn start() -> Option<Replicas> {
        let database = TestDatabase::postgres()?;
        let named = |role: &str| format!("{role}_{}", uuid::Uuid::new_v4().simple());
        let (here_name, there_name) = (named("here"), named("there"));
        let there_url = format!("{}&application_name={there_name}", database.url);
        let here_url = format!("{}&application_name={here_name}", database.url);
        let sso = Sso::new(database.reached_at(here_url)).await;
        let there = sso
            .app
            .spawn_replica_at(DatabaseUrl::parse(&there_url).unwrap())
            .await;
        let mut admin = PgConnection::establish(&std::env::var(POSTGRES_ENV).unwrap()).unwrap();
        // Both listen before anything is asked: a watch that starts listening moves its version.
        let deadline = Instant::now() + Duration::from_secs(5);
        for name in [&here_name, &there_name] {
            while pid_named(&mut admin, &format!("{name}: idgate change watch")).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "{name}'s change watch never listened"
                );
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Some(Replicas {
            sso,
            there,
            here_name,
            there_name,
            admin,
        })
    }

    /// Ends the listening connection of `here`'s change watch, once it listens (after an end it
    /// connects again within a quarter of a second), and returns once its server process is gone.
    async fn end_heres_watch(&mut self) {
        let watch = format!("{}: idgate change watch", self.here_name);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = pid_named(&mut self.admin, &watch) {
                end_backend(&mut self.admin, pid);
                return;
            }
            assert!(Instant::now() < deadline, "the change watch never listened");
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// `there`'s answer to a GET of `path` with the session cookie `session`.
    async fn verify_there(&self, session: &str) -> u16 {
        let response = self
            .sso
            .app
            .client
            .get(format!("{}/auth/verify", self.there))
            .insert_header((COOKIE, format!("idgate_session={session}")))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    }

    /// Eleven times, 0 to 20 ms after `here`'s watch lost its connection: `prepare` makes what
    /// `change` (made through `here`) takes away, and `there` must refuse it within a second.
    /// `refused` asks `there`; it must accept before the change, asked three times so that it keeps
    /// the answer (a token's first use is recorded, a write).
    async fn change_as_the_watch_dies<T, P, C, R>(
        &mut self,
        what: &str,
        prepare: P,
        change: C,
        refused: R,
    ) where
        P: AsyncFn(&Replicas, usize) -> T,
        C: AsyncFn(&Replicas, &T),
        R: AsyncFn(&Replicas, &T) -> bool,
    {
        for trial in 0..=10 {
            let made = prepare(self, trial).await;
            for _ in 0..3 {
                assert!(
                    !refused(self, &made).await,
                    "{what}: refused before the change"
                );
            }
            self.end_heres_watch().await;
            actix_web::rt::time::sleep(Duration::from_millis(2 * trial as u64)).await;
            change(self, &made).await;
            seen_by_replica(
                &format!("{what}, {} ms after the watch's end", 2 * trial),
                || refused(self, &made),
            )
            .await;
        }
    }
}

/// The server process of the connection named `application_name`, if there is one.
fn pid_named(admin: &mut PgConnection, application_name: &str) -> Option<i32> {
    diesel::select(sql::<Integer>(&format!(
        "pid FROM pg_stat_activity WHERE application_name = '{application_name}'"
    )))
    .get_result(admin)
    .optional()
    .unwrap()
}

/// Ends the server process `pid` and returns as soon as it is gone: within a few milliseconds,
/// before the client whose connection it was can have noticed (the watch reads its socket every
/// 20 ms), as a connection killer or a failover would. (`pg_terminate_backend`'s own wait looks
/// every 100 ms.)
fn end_backend(admin: &mut PgConnection, pid: i32) {
    let signalled: bool = diesel::select(sql::<Bool>(&format!("pg_terminate_backend({pid})")))
        .get_result(admin)
        .unwrap();
    assert!(signalled, "the server process {pid} is there to end");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: i64 = diesel::select(sql::<BigInt>(&format!(
            "count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )))
        .get_result(admin)
        .unwrap();
        if alive == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server process {pid} did not end"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[actix_web::test]
async fn a_token_revoked_as_the_watch_dies_is_refused_by_the_other_replica() {
    let Some(mut replicas) = Replicas::start().await else {
        return;
    };
    let revoker = replicas
        .sso
        .app
        .token_for(&replicas.sso.admin.workspace, "tokens:write");
    replicas
        .change_as_the_watch_dies(
            "a revoked token",
            async |replicas, _| {
                replicas
                    .sso
                    .app
                    .token_for(&replicas.sso.admin.workspace, "scim")
            },
            async |replicas, token| {
                let path = format!("/api/v1/workspaces/acme/tokens/{}", token.token.id);
                let response = replicas
                    .sso
                    .app
                    .client
                    .delete(replicas.sso.app.url(&path))
                    .bearer_auth(&revoker.secret)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 204);
            },
            async |replicas, token| {
                let response = replicas
                    .sso
                    .app
                    .client
                    .get(format!("{}/scim/v2/Users?count=1", replicas.there))
                    .bearer_auth(&token.secret)
                    .send()
                    .await
                    .unwrap();
                response.status() == 401
            },
        )
        .await;
}

#[actix_web::test]
async fn a_session_ended_as_the_watch_dies_is_refused_by_the_other_replica() {
    let Some(mut replicas) = Replicas::start().await else {
        return;
    };
    replicas
        .change_as_the_watch_dies(
            "an ended session",
            async |replicas, _| replicas.sso.log_in("acme", "ada@example.com").await,
            async |replicas, session| {
                let logout = replicas
                    .sso
                    .with_cookie("POST", "/api/v1/session/logout", session)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(logout.status(), 200);
            },
            async |replicas, session| replicas.verify_there(session).await == 401,
        )
        .await;
}

#[actix_web::test]
async fn a_person_deactivated_as_the_watch_dies_is_refused_by_the_other_replica() {
    let Some(mut replicas) = Replicas::start().await else {
        return;
    };
    replicas
        .change_as_the_watch_dies(
            "a deactivated person",
            async |replicas, trial| {
                let email = format!("person{trial}@example.com");
                let person = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": email,
                    "emails": [{"value": email, "type": "work"}],
                });
                let (status, person) = replicas
                    .sso
                    .app
                    .send_json("POST", "/scim/v2/Users", &replicas.sso.admin.token, &person)
                    .await;
                assert_eq!(status, 201, "{person}");
                let session = replicas.sso.log_in("acme", &email).await;
                (person["id"].as_str().unwrap().to_owned(), session)
            },
            async |replicas, (id, _)| {
                let deactivate = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}],
                });
                let path = format!("/scim/v2/Users/{id}");
                let (status, shown) = replicas
                    .sso
                    .app
                    .send_json("PATCH", &path, &replicas.sso.admin.token, &deactivate)
                    .await;
                assert_eq!(status, 200, "{shown}");
            },
            async |replicas, (_, session)| replicas.verify_there(session).await == 401,
        )
        .await;
}

#[actix_web::test]
async fn a_grant_revoked_as_the_watch_dies_is_refused_by_the_other_replica() {
    let Some(mut replicas) = Replicas::start().await else {
        return;
    };
    let app = &replicas.sso.app;
    let admin = app
        .token_for(
            &replicas.sso.admin.workspace,
            "scim,workspace:read,workspace:write,sources:read,sources:write",
        )
        .secret;
    let person = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "auditor@example.com",
        "emails": [{"value": "auditor@example.com", "primary": true}],
    });
    let (status, created) = app
        .send_json("POST", "/scim/v2/Users", &admin, &person)
        .await;
    assert_eq!(status, 201, "{created}");
    let auditor = created["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/workspaces/acme/members/{auditor}/roles");
    let (status, shown) = app
        .send_json("PUT", &path, &admin, &json!({"roles": ["read-only"]}))
        .await;
    assert_eq!(status, 200, "{shown}");
    let source = json!({"kind": "source", "name": "web"});
    let (status, web) = app
        .send_json("POST", "/api/v1/workspaces/acme/resources", &admin, &source)
        .await;
    assert_eq!(status, 201, "{web}");
    let web = web["id"].as_str().unwrap().to_owned();
    let decision = json!({"subject": auditor, "action": "sources.delete", "resource": web});
    replicas
        .change_as_the_watch_dies(
            "a revoked grant",
            async |replicas, _| {
                let grant = json!({"member": auditor, "resource": web, "level": "full_access"});
                let (status, grant) = replicas
                    .sso
                    .app
                    .send_json("POST", "/api/v1/workspaces/acme/grants", &admin, &grant)
                    .await;
                assert_eq!(status, 201, "{grant}");
                grant["id"].as_str().unwrap().to_owned()
            },
            async |replicas, grant| {
                let path = format!("/api/v1/workspaces/acme/grants/{grant}");
                let (status, shown) = replicas
                    .sso
                    .app
                    .send_json("DELETE", &path, &admin, &json!({}))
                    .await;
                assert_eq!(status, 204, "{shown}");
            },
            async |replicas, _| {
                let mut response = replicas
                    .sso
                    .app
                    .client
                    .post(format!(
                        "{}/api/v1/workspaces/acme/authorize",
                        replicas.there
                    ))
                    .bearer_auth(&admin)
                    .send_json(&decision)
                    .await
                    .unwrap();
                let body: Value = response.json().await.unwrap();
                body["allowed"] == false
            },
        )
        .await;
}

/// A write made by hand, announced to no one, is seen by every replica within a second: the commit
/// counts itself, and each replica reads the count.
#[actix_web::test]
async fn a_write_by_hand_is_seen_without_a_notice() {
    let Some(replicas) = Replicas::start().await else {
        return;
    };
    let token = replicas
        .sso
        .app
        .token_for(&replicas.sso.admin.workspace, "scim");
    let users = || async {
        let response = replicas
            .sso
            .app
            .client
            .get(format!("{}/scim/v2/Users?count=1", replicas.there))
            .bearer_auth(&token.secret)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    for _ in 0..3 {
        assert_eq!(users().await, 200, "kept from the third ask on");
    }
    // A connection of the test's own, which announces nothing.
    let mut by_hand = PgConnection::establish(&replicas.sso.app.database.url).unwrap();
    by_hand
        .batch_execute(&format!(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = '{}'",
            token.token.id
        ))
        .unwrap();
    seen_by_replica("a revocation by hand", || async { users().await == 401 }).await;
}

/// Every table a memo may read counts its commits (see `a_write_by_hand_is_seen_without_a_notice`):
/// a table made later without the trigger would be read stale for ever after a lost notice.
#[actix_web::test]
async fn every_table_but_the_heartbeat_counts_its_commits() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let mut conn = PgConnection::establish(&database.url).unwrap();
    drop(database.connect());
    let uncounted: Vec<String> = diesel::select(sql::<Text>(
        "tablename::text FROM pg_tables t WHERE schemaname = current_schema() \
         AND NOT EXISTS (SELECT 1 FROM information_schema.triggers \
             WHERE trigger_schema = t.schemaname AND event_object_table = t.tablename \
             AND trigger_name = 'count_commits') ORDER BY 1",
    ))
    .load(&mut conn)
    .unwrap();
    assert_eq!(
        uncounted,
        ["__diesel_schema_migrations", "commit_counts", "replicas"]
    );
}

/// After every connection to the database is ended, with the database itself up, no request is
/// answered 5xx: a pooled connection that died idle is never handed to a request.
#[actix_web::test]
async fn requests_after_every_connection_is_ended_are_served() {
    let Some(mut replicas) = Replicas::start().await else {
        return;
    };
    let app = &replicas.sso.app;
    let token = app.token_for(&replicas.sso.admin.workspace, "scim").secret;
    let both = [app.url(""), replicas.there.clone()];
    let users = |base: &str| {
        app.client
            .get(format!("{base}/scim/v2/Users?count=1"))
            .bearer_auth(&token)
            .send()
    };
    // Each pool holds several connections, as after a burst.
    for base in &both {
        let burst: Vec<_> = (0..8).map(|_| users(base)).collect();
        for response in futures_util::future::join_all(burst).await {
            assert_eq!(response.unwrap().status(), 200);
        }
    }
    let ended: Vec<bool> = diesel::select(sql::<Bool>(&format!(
        "pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE application_name LIKE '{}%' OR application_name LIKE '{}%'",
        replicas.here_name, replicas.there_name
    )))
    .load(&mut replicas.admin)
    .unwrap();
    assert!(ended.len() >= 4, "ended {} connections", ended.len());
    let mut failed = Vec::new();
    for base in &both {
        for _ in 0..30 {
            let status = users(base).await.unwrap().status().as_u16();
            if status >= 500 {
                failed.push(status);
            }
        }
    }
    assert_eq!(failed, Vec::<u16>::new(), "of 60 requests after the end");
}

/// A commit made just as the watch's connection dies is announced all the same, on the connection
/// the watch makes next: ten times, the commit told to the watch at once after its server process
/// is gone, before the watch can have noticed.
#[test]
fn a_notice_whose_connection_died_goes_out_on_the_next() {
    let Some(database) = TestDatabase::postgres() else {
        return;
    };
    let name = format!("watch_{}", uuid::Uuid::new_v4().simple());
    let url = DatabaseUrl::parse(&format!("{}&application_name={name}", database.url)).unwrap();
    drop(database.connect());
    let mut admin = PgConnection::establish(&std::env::var(POSTGRES_ENV).unwrap()).unwrap();
    admin
        .batch_execute(&format!("LISTEN {}", changes::CHANNEL))
        .unwrap();
    let watch = ChangeWatch::open(&url).unwrap();
    let watch_name = format!("{name}: idgate change watch");
    for trial in 0..10 {
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Some(pid) = pid_named(&mut admin, &watch_name) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the watch never listened");
            std::thread::sleep(Duration::from_millis(5));
        };
        // Whatever was announced so far is not this trial's.
        admin.notifications_iter().for_each(drop);
        end_backend(&mut admin, pid);
        watch.committed(Reach::Anything);

        let deadline = Instant::now() + Duration::from_secs(1);
        'heard: loop {
            assert!(Instant::now() < deadline, "trial {trial}: never announced");
            std::thread::sleep(Duration::from_millis(5));
            let senders: Vec<i32> = admin
                .notifications_iter()
                .map(|notice| notice.unwrap().process_id)
                .collect();
            for sender in senders {
                if pid_named(&mut admin, &watch_name) == Some(sender) {
                    break 'heard;
                }
            }
        }
    }
}
