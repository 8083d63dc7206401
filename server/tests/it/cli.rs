//! The command line: configuration precedence and errors, and writes beside a running server.

use crate::harness::{Db, TestEnv, TestServer, BIN};
use std::process::{Command, Stdio};

fn run_bare(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("DATABASE_URL").env_remove("SWITCHYARD_DATABASE_URL");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<(&str, &str)>, &str)> = vec![
        (vec!["serve", "--data-dir", d, "--listen", "nowhere"], vec![], "listen"),
        (vec!["serve", "--data-dir", d], vec![("SWITCHYARD_LISTEN", "1.2.3.4")], "listen"),
        (vec!["serve", "--data-dir", d, "--database-url", "mysql://x"], vec![], "database_url"),
        (vec!["serve", "--data-dir", d, "--log-format", "xml"], vec![], "log_format"),
        (vec!["serve", "--data-dir", d], vec![("SWITCHYARD_SESSION_KEY", "c2hvcnQ=")], "session_key"),
        (vec!["serve", "--data-dir", d, "--allow-private-destinations", "maybe"], vec![], "allow_private_destinations"),
    ];
    for (args, envs, key) in cases {
        let out = run_bare(&args, &envs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&format!("configuration error: {key}:")), "{args:?}: {err}");
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisten_addr = \"x\"\n").unwrap();
    let out = run_bare(&["serve", "--config", file.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("configuration error: listen_addr:"), "{err}");
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.toml");
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    std::fs::write(&file, format!("data_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\n", from_file.display())).unwrap();
    // The file sets the data dir; the env var overrides the file's listen address.
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", file.to_str().unwrap(), "serve"])
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env("SWITCHYARD_LISTEN", "127.0.0.1:0");
    let server = TestServer::spawn(cmd);
    assert!(from_file.join("switchyard.db").exists(), "the file's data_dir is used");
    drop(server);
    // A flag beats the env var; DATABASE_URL is read when SWITCHYARD_DATABASE_URL is absent.
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", file.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .env("SWITCHYARD_LISTEN", "nowhere")
        .env("SWITCHYARD_DATA_DIR", &from_env)
        .env_remove("SWITCHYARD_DATABASE_URL")
        .env("DATABASE_URL", format!("sqlite://{}/via-database-url.db", dir.path().display()));
    let server = TestServer::spawn(cmd);
    assert!(dir.path().join("via-database-url.db").exists());
    assert!(from_env.join("session.key").exists(), "the env data dir beats the file's");
    drop(server);
}

#[tokio::test]
async fn cli_writes_succeed_while_a_server_runs_on_the_same_sqlite_file() {
    let env = TestEnv::new(Db::Sqlite).await.unwrap();
    env.add_user("owner@example.com", "owner", "correct horse battery");
    let server = env.start().await;
    let owner = server.login("owner@example.com", "correct horse battery").await;
    // Server-side writes and CLI writes interleave.
    let writer = tokio::spawn({
        let owner = owner.clone();
        let url = server.at("/api/users");
        async move {
            for i in 0..10 {
                let res = owner
                    .post(&url)
                    .json(&serde_json::json!({"email": format!("api{i}@example.com"), "password": "correct horse battery", "role": "viewer"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        }
    });
    for i in 0..5 {
        env.add_user(&format!("cli{i}@example.com"), "viewer", "correct horse battery");
        env.token(&format!("t{i}"), "viewer");
    }
    writer.await.unwrap();
    let out = env.run(&["users", "list"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 16);
}

#[test]
fn tokens_create_prints_only_the_token_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_bare(&["tokens", "create", "ci", "--role", "editor", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("sy_"));
    let out = run_bare(&["tokens", "create", "ci", "--role", "root", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role 'root'"));
}

#[test]
fn users_add_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--data-dir", d])
            .env_remove("DATABASE_URL")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["users", "add", "nobody", "--role", "admin", "--password-stdin"], "long enough pw\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("email 'nobody'"));
    let out = run(&["users", "add", "a@example.com", "--role", "admin", "--password-stdin"], "short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password: must be at least 8"));
    let out = run(&["users", "add", "a@example.com", "--role", "admin", "--password-stdin"], "long enough pw\n");
    assert!(out.status.success());
    let out = run(&["users", "add", "a@example.com", "--role", "admin", "--password-stdin"], "long enough pw\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already taken"));
}
