//! The `idgate` binary's admin commands, run as an operator would, against a stopped or running server.

use diesel::prelude::*;
use idgate::db::schema::audit_events;

use crate::helpers::{TestApp, TestDatabase, failure_line, run_cli, stderr, stdout};
use crate::on_both_databases;

on_both_databases!(
    workspace_commands,
    token_commands_work_against_a_running_server,
    token_command_failures_are_one_line,
    migrate_applies_once,
    healthcheck_tells_up_from_down,
);

fn count_events(database: &TestDatabase, action: &str) -> i64 {
    audit_events::table
        .filter(audit_events::action.eq(action))
        .count()
        .get_result(&mut *database.connect())
        .unwrap()
}

async fn workspace_commands(database: TestDatabase) {
    let url = database.url.clone();
    let created = run_cli(
        &["workspace", "create", "acme", "--name", "Acme Corp"],
        &url,
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "stdout is the id alone: {id:?}"
    );
    assert!(
        run_cli(&["workspace", "create", "globex", "--hipaa"], &url)
            .await
            .status
            .success()
    );

    let listed = stdout(&run_cli(&["workspace", "list"], &url).await);
    let rows: Vec<&str> = listed.lines().collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0], format!("acme\t{id}\tstandard\tAcme Corp"));
    assert!(
        rows[1].starts_with("globex\t") && rows[1].ends_with("\thipaa\tglobex"),
        "{listed}"
    );

    let set = run_cli(&["workspace", "set", "acme", "--hipaa", "true"], &url).await;
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(
        stdout(&run_cli(&["workspace", "list"], &url).await)
            .starts_with(&format!("acme\t{id}\thipaa\t"))
    );
    assert_eq!(count_events(&database, "workspace.updated"), 1);

    let line = failure_line(&run_cli(&["workspace", "create", "acme"], &url).await);
    assert_eq!(
        line,
        "idgate: a workspace with slug \"acme\" already exists"
    );
    assert_eq!(
        count_events(&database, "workspace.created"),
        2,
        "a failed create records nothing"
    );

    let line = failure_line(&run_cli(&["workspace", "create", "Not_A_Slug"], &url).await);
    assert!(line.contains("must be 2 to 63 lowercase letters"), "{line}");
    let line = failure_line(&run_cli(&["workspace", "set", "acme"], &url).await);
    assert_eq!(
        line,
        "idgate: nothing to change: give --hipaa true|false or --name NAME"
    );
    let line =
        failure_line(&run_cli(&["workspace", "set", "nobody", "--hipaa", "false"], &url).await);
    assert_eq!(line, "idgate: no workspace with slug \"nobody\"");
    let usage = run_cli(&["workspace", "set", "acme", "--hipaa", "maybe"], &url).await;
    assert!(!usage.status.success() && stderr(&usage).contains("invalid value 'maybe'"));
}

async fn token_commands_work_against_a_running_server(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    assert!(
        app.cli(&["workspace", "create", "acme"])
            .await
            .status
            .success()
    );
    let created = app
        .cli(&[
            "token",
            "create",
            "--workspace",
            "acme",
            "--scopes",
            "workspace:read,audit:read",
            "--name",
            "ci",
            "--expires-in",
            "90d",
        ])
        .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = stdout(&created).lines().last().unwrap().to_owned();
    assert!(stderr(&created).contains("not shown again"));
    assert_eq!(app.get("/api/v1/workspaces/acme", &secret).await.0, 200);

    let listed = stdout(&app.cli(&["token", "list", "--workspace", "acme"]).await);
    let row: Vec<&str> = listed.trim_end().split('\t').collect();
    let token_id = row[0].to_owned();
    assert!(secret.starts_with(&format!("idg_{token_id}_")));
    assert_eq!(
        (row[1], row[2], row[6]),
        ("active", "workspace:read,audit:read", "ci")
    );
    assert_ne!(row[5], "-", "last used by the request above");
    assert!(
        !listed.contains(&secret[37..]),
        "the secret is never listed"
    );

    let revoked = app.cli(&["token", "revoke", &token_id]).await;
    assert!(revoked.status.success());
    assert_eq!(
        app.get("/api/v1/workspaces/acme", &secret).await.0,
        401,
        "the running server sees the revocation"
    );
    let again = app.cli(&["token", "revoke", &token_id]).await;
    assert!(again.status.success());
    assert!(stderr(&again).contains("already revoked"));
    assert!(
        stdout(&app.cli(&["token", "list", "--workspace", "acme"]).await).contains("\trevoked\t")
    );
    assert_eq!(count_events(&app.database, "token.revoked"), 1);
}

async fn token_command_failures_are_one_line(database: TestDatabase) {
    let url = database.url.clone();
    assert!(
        run_cli(&["workspace", "create", "acme"], &url)
            .await
            .status
            .success()
    );
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "token",
                "create",
                "--workspace",
                "nobody",
                "--scopes",
                "scim",
            ],
            "no workspace with slug \"nobody\"",
        ),
        (
            &[
                "token",
                "create",
                "--workspace",
                "acme",
                "--scopes",
                "scim,root",
            ],
            "unknown scope \"root\"",
        ),
        (
            &["token", "create", "--workspace", "acme", "--scopes", ","],
            "at least one scope",
        ),
        (
            &[
                "token",
                "create",
                "--workspace",
                "acme",
                "--scopes",
                "scim",
                "--expires-in",
                "soon",
            ],
            "not a duration",
        ),
        (&["token", "revoke", "0123"], "no token with id 0123"),
    ];
    for (args, reason) in cases {
        let line = failure_line(&run_cli(args, &url).await);
        assert!(
            line.starts_with("idgate: ") && line.contains(reason),
            "{args:?}: {line}"
        );
    }
    assert_eq!(count_events(&database, "token.created"), 0);
    let listed = run_cli(&["token", "list", "--workspace", "acme"], &url).await;
    assert!(listed.status.success() && stdout(&listed).is_empty());
}

async fn migrate_applies_once(database: TestDatabase) {
    let first = run_cli(&["migrate"], &database.url).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let applied = stdout(&first);
    assert!(
        applied.lines().count() >= 1 && applied.contains("foundation"),
        "{applied}"
    );
    let second = run_cli(&["migrate"], &database.url).await;
    assert!(second.status.success());
    assert_eq!(stdout(&second), "");
    assert_eq!(stderr(&second).trim(), "the database is up to date");
}

async fn healthcheck_tells_up_from_down(database: TestDatabase) {
    let app = TestApp::spawn(database).await;
    let up = app
        .cli(&["healthcheck", "--bind", &app.address.to_string()])
        .await;
    assert!(up.status.success(), "{}", stderr(&up));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let line = failure_line(
        &app.cli(&["healthcheck", "--bind", &closed.to_string()])
            .await,
    );
    assert!(
        line.starts_with(&format!("idgate: no answer from http://{closed}/healthz")),
        "{line}"
    );
}

/// `idgate workspace list | head -0`: a command whose reader is gone ends as other Unix tools do,
/// by SIGPIPE, without a panic on stderr.
#[test]
fn a_command_whose_reader_is_gone_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;

    let database = TestDatabase::sqlite();
    drop(database.connect());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idgate"))
        .args([
            "workspace",
            "create",
            "acme",
            "--database-url",
            &database.url,
        ])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{stderr}");
}
