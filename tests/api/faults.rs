//! Losing the database: with PostgreSQL unreachable, requests are answered 503 within the pool's
//! checkout timeout (no hang, no panic), and service resumes by itself when it returns. The
//! outage is a TCP proxy between idgate and PostgreSQL that drops every connection and refuses
//! new ones until it is brought back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::helpers::{TestApp, TestDatabase};

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
