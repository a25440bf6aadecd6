//! What `idgate serve` writes to its log: every request line names its request id, and no secret
//! (token, query string) ever appears.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::TestDatabase;

/// A server process, stopped when dropped: also when a test fails before it is done with it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `idgate serve` on `database` with `args` added and `RUST_LOG` unset, and the lines it
/// writes to stderr (a pipe, not a terminal).
fn serve(database: &TestDatabase, args: &[&str]) -> (Server, mpsc::Receiver<String>) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &database.url,
        ])
        .args(args)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("idgate serve starts");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = server.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    (Server(server), lines)
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the server logs")
}

#[actix_web::test]
async fn the_default_log_is_plain_text_with_each_request_a_line() {
    let database = TestDatabase::sqlite();
    let (server, lines) = serve(&database, &[]);
    // A log written to a file or a pipe carries no terminal colour codes.
    let next_plain_line = || {
        let line = next_line(&lines);
        assert!(
            !line.contains('\u{1b}'),
            "escape codes in the log: {line:?}"
        );
        line
    };
    let address = loop {
        let line = next_plain_line();
        if let Some((_, address)) = line.split_once("address=") {
            break address.split_whitespace().next().unwrap().to_owned();
        }
    };
    let response = awc::Client::default()
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    let request_id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // The request's line names the id its response carried.
    loop {
        let line = next_plain_line();
        if line.contains("request finished") && line.contains(&request_id) {
            break;
        }
    }
    drop(server);
}

#[actix_web::test]
async fn json_logs_carry_request_ids_and_no_secrets() {
    let database = TestDatabase::sqlite();
    let (server, lines) = serve(&database, &["--log-format", "json"]);
    let mut log: Vec<Value> = Vec::new();
    let address = loop {
        let entry: Value =
            serde_json::from_str(&next_line(&lines)).expect("every log line is JSON");
        let listening = entry["fields"]["message"] == "listening";
        log.push(entry);
        if listening {
            break log.last().unwrap()["fields"]["address"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    };

    let tenant = {
        let mut conn = database.connect();
        let context = idgate::audit::AuditContext::cli();
        let workspace = crate::helpers::workspace(&mut conn, "acme");
        let scopes = idgate::permissions::Scopes::parse("workspace:read").unwrap();
        let new = idgate::tokens::NewToken {
            name: None,
            scopes,
            lifetime: None,
            minted_by: None,
            setup_link_id: None,
        };
        idgate::tokens::create(&mut conn, &workspace, new, &context)
            .unwrap()
            .secret
    };
    let forged = format!("idg_{}_{}", "f".repeat(32), "S".repeat(43));
    let client = awc::Client::default();
    let requests = [
        ("/api/v1/workspaces/acme", tenant.as_str(), 200),
        ("/api/v1/workspaces/acme", forged.as_str(), 401),
        (
            "/healthz?SAMLRequest=c2VjcmV0LXNhbWwtbWVzc2FnZQ",
            tenant.as_str(),
            200,
        ),
        // Console links carry their secret in the path.
        ("/console/-/link/bGluay1zZWNyZXQtb25l", tenant.as_str(), 404),
        ("/setup/bGluay1zZWNyZXQtdHdv", tenant.as_str(), 404),
        // And so does a link mistyped or mangled, which matches no route.
        ("/setup/c2xhc2gtYWZ0ZXItaXQ/", tenant.as_str(), 404),
        ("/setup/ZXh0cmEtc2VnbWVudA/more", tenant.as_str(), 404),
        ("/setup//ZG91YmxlLXNsYXNoZXM", tenant.as_str(), 404),
        ("/SETUP/b3RoZXItY2FzZS1zZXR1cA", tenant.as_str(), 404),
        ("/Console/-/link/b3RoZXItY2FzZS1saW5r", tenant.as_str(), 404),
        (
            "/console/-/link//c3RyYXktc2xhc2gtbGluaw/",
            tenant.as_str(),
            404,
        ),
    ];
    let mut request_ids = Vec::new();
    for (path, token, expected) in requests {
        let response = client
            .get(format!("http://{address}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        request_ids.push(
            response
                .headers()
                .get("x-request-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
        );
        assert_eq!(response.status().as_u16(), expected, "{path}");
    }

    // Each request's line names the id its response carried.
    let mut unseen = request_ids.clone();
    while !unseen.is_empty() {
        let entry: Value = serde_json::from_str(&next_line(&lines)).unwrap();
        if entry["fields"]["message"] == "request finished" {
            let request_id = entry["span"]["request_id"]
                .as_str()
                .expect("the line names its request");
            unseen.retain(|id| id != request_id);
        }
        log.push(entry);
    }
    drop(server);
    log.extend(
        lines
            .try_iter()
            .filter_map(|line| serde_json::from_str(&line).ok()),
    );

    let text = log
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [
        &tenant[37..],
        &forged[37..],
        "SAMLRequest",
        "c2VjcmV0LXNhbWwtbWVzc2FnZQ",
        "bGluay1zZWNyZXQtb25l",
        "bGluay1zZWNyZXQtdHdv",
        "c2xhc2gtYWZ0ZXItaXQ",
        "ZXh0cmEtc2VnbWVudA",
        "ZG91YmxlLXNsYXNoZXM",
        "b3RoZXItY2FzZS1zZXR1cA",
        "b3RoZXItY2FzZS1saW5r",
        "c3RyYXktc2xhc2gtbGluaw",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
    assert!(
        text.contains("/api/v1/workspaces/acme"),
        "paths are logged:\n{text}"
    );
    assert!(
        text.contains("/setup/…/more"),
        "what cannot be a secret in a path no route matched is logged:\n{text}"
    );
}
