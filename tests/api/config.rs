//! Configuration as the binary sees it: precedence end to end, and each start-up error as one line.

use crate::helpers::{failure_line, run_binary, stdout};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The database each layer names is the one the command uses: flag over env over file.
#[actix_web::test]
async fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let config = dir.path().join("idgate.toml");
    std::fs::write(&config, format!("database_url = \"{}\"\n", url("file.db"))).unwrap();
    let config = config.to_str().unwrap().to_owned();

    let create = |slug: &'static str, flag: Option<String>, env_url: Option<String>| {
        let mut all = args(&["workspace", "create", slug, "--config", &config]);
        if let Some(flag) = flag {
            all.extend(["--database-url".to_owned(), flag]);
        }
        let vars = env_url
            .map(|value| vec![("IDGATE_DATABASE_URL".to_owned(), value)])
            .unwrap_or_default();
        run_binary(all, vars)
    };
    assert!(create("from-file", None, None).await.status.success());
    assert!(
        create("from-env", None, Some(url("env.db")))
            .await
            .status
            .success()
    );
    assert!(
        create("from-flag", Some(url("flag.db")), Some(url("env.db")))
            .await
            .status
            .success()
    );

    for (database, slug) in [
        ("file.db", "from-file"),
        ("env.db", "from-env"),
        ("flag.db", "from-flag"),
    ] {
        let listed = run_binary(
            args(&["workspace", "list", "--database-url", &url(database)]),
            Vec::new(),
        )
        .await;
        let slugs: Vec<String> = stdout(&listed)
            .lines()
            .map(|row| row.split('\t').next().unwrap().to_owned())
            .collect();
        assert_eq!(slugs, [slug], "{database}");
    }
}

#[actix_web::test]
async fn each_start_up_error_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "database_url = \"sqlite://x.db\"\nport = 80\n").unwrap();
    let bad_file = bad_file.to_str().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("ok.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();

    type Case = (Vec<String>, Vec<(String, String)>, String);
    let cases: Vec<Case> = vec![
        (
            args(&["migrate", "--config", "/nonexistent/idgate.toml"]),
            vec![],
            "cannot read config file /nonexistent/idgate.toml".into(),
        ),
        (
            args(&["migrate", "--config", bad_file]),
            vec![],
            "unknown field: found `port`".into(),
        ),
        (
            args(&["migrate"]),
            env(&[("IDGATE_DATABASE_URL", "mysql://db/idgate")]),
            "must start with sqlite:// or postgres://".into(),
        ),
        (
            args(&["serve", "--database-url", &sqlite, "--bind", "localhost"]),
            vec![],
            "key \"default.bind\" in command-line flags".into(),
        ),
        (
            args(&[
                "serve",
                "--database-url",
                &sqlite,
                "--base-url",
                "idgate.example.com",
            ]),
            vec![],
            "base URL \"idgate.example.com\" is not a URL".into(),
        ),
        (
            args(&["serve", "--database-url", &sqlite, "--log-format", "xml"]),
            vec![],
            "unknown variant: found `xml`".into(),
        ),
        (
            args(&["serve", "--database-url", &sqlite, "--bind", &taken_address]),
            vec![],
            format!("cannot listen on {taken_address}"),
        ),
        (
            args(&[
                "migrate",
                "--database-url",
                "sqlite:///nonexistent/dir/idgate.db",
            ]),
            vec![],
            "cannot connect to database sqlite:///nonexistent/dir/idgate.db".into(),
        ),
        (
            args(&[
                "migrate",
                "--database-url",
                "postgres://idgate:hunter2@127.0.0.1:1/idgate",
            ]),
            vec![],
            "cannot connect to database postgres://idgate:***@127.0.0.1:1/idgate".into(),
        ),
    ];
    for (args, env, expected) in cases {
        let output = run_binary(args.clone(), env).await;
        let line = failure_line(&output);
        assert!(
            line.starts_with("idgate: ") && line.contains(&expected),
            "{args:?}: {line}"
        );
        assert!(!line.contains("hunter2"), "passwords never printed: {line}");
    }
    drop(taken);
}
