//! Starts the real `switchyard` binary on port 0 against a fresh SQLite file or a fresh
//! PostgreSQL database, and drives it over HTTP and its CLI.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn pg_base() -> String {
    std::env::var("SWITCHYARD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// One test's world: a data dir and, on PostgreSQL, a database of its own (dropped afterwards).
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pg_name: Option<String>,
}

impl TestEnv {
    /// `None` when PostgreSQL is wanted but unreachable outside CI (a loud skip).
    pub async fn new(db: Db) -> Option<TestEnv> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg_name) = match db {
            Db::Sqlite => (format!("sqlite://{}/switchyard.db", dir.path().display()), None),
            Db::Postgres => {
                use sqlx::Connection;
                let admin = format!("{}/postgres", pg_base());
                let mut conn = match sqlx::PgConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) if std::env::var("CI").is_err() => {
                        eprintln!("!!! SKIPPED: PostgreSQL unreachable at {admin}: {e}");
                        return None;
                    }
                    Err(e) => panic!("PostgreSQL unreachable at {admin}: {e}"),
                };
                let name = format!("sy_test_{}", hex_id());
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                (format!("{}/{name}", pg_base()), Some(name))
            }
        };
        Some(TestEnv { dir, database_url, pg_name })
    }

    /// The CLI with this env's data dir and database.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir").arg(self.dir.path()).arg("--database-url").arg(&self.database_url);
        cmd.env_remove("DATABASE_URL").env_remove("SWITCHYARD_DATABASE_URL").env("SWITCHYARD_LOG", "warn");
        cmd
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.cli();
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn switchyard");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("switchyard output")
    }

    pub fn add_user(&self, email: &str, role: &str, password: &str) {
        let out = self.run(&["users", "add", email, "--role", role, "--password-stdin"], Some(&format!("{password}\n")));
        assert!(out.status.success(), "users add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn token(&self, name: &str, role: &str) -> String {
        let out = self.run(&["tokens", "create", name, "--role", role], None);
        assert!(out.status.success(), "tokens create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub async fn start(&self) -> TestServer {
        self.start_with(&[]).await
    }

    pub async fn start_with(&self, extra: &[&str]) -> TestServer {
        let mut cmd = self.cli();
        cmd.env("SWITCHYARD_LOG", "info").args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
        TestServer::spawn(cmd)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = format!("{}/postgres", pg_base());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!("{:016x}", h.finish())
}

/// A running server; killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub fn spawn(mut cmd: Command) -> TestServer {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn switchyard serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let url = line[i + "listening on ".len()..].split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start; its log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        TestServer { child, url, log }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A client signed in as this user (session cookie).
    pub async fn login(&self, email: &str, password: &str) -> reqwest::Client {
        let c = self.client();
        let res = c
            .post(self.at("/api/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login failed: {}", res.text().await.unwrap());
        c
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an async test body against SQLite and PostgreSQL: `both!(name)` for `async fn name(db: Db)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name($crate::harness::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name($crate::harness::Db::Postgres).await
            }
        }
    };
}

/// `let Some(env) = env!(db) else { return };`
#[macro_export]
macro_rules! env_or_skip {
    ($db:expr) => {
        match $crate::harness::TestEnv::new($db).await {
            Some(env) => env,
            None => return,
        }
    };
}
