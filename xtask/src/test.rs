//! `cargo xtask test`: unit and integration tests (SQLite and PostgreSQL), then end2end in Chromium.

use crate::{build, cargo, root, status};
use anyhow::{bail, Result};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const PG_START: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// The brokers the broker destinations are tested against, and how to start each.
const BROKERS: &[(&str, &str, &str)] = &[
    ("Redis", "127.0.0.1:6379", "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"),
    ("RabbitMQ", "127.0.0.1:5672", "rabbitmq-server -detached"),
    ("Mosquitto (MQTT)", "127.0.0.1:1883", "mosquitto -d -c /etc/mosquitto/mosquitto.conf"),
    ("NATS JetStream", "127.0.0.1:4222", "nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &"),
];

fn reachable(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("static address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(path);
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
}

pub fn run(args: &[String]) -> Result<()> {
    let started = Instant::now();
    let filter: Vec<&String> = args.iter().collect();
    // What the project cannot install by itself: say how, before spending minutes on builds.
    if !reachable("127.0.0.1:5432") {
        bail!("PostgreSQL is not reachable on 127.0.0.1:5432; start it with:\n  {PG_START}");
    }
    for (name, addr, start) in BROKERS {
        if !reachable(addr) {
            bail!("{name} is not reachable on {addr} (the broker destination tests need it); start it with:\n  {start}");
        }
    }
    let browser = chromium().ok_or_else(|| {
        anyhow::anyhow!("Chromium is needed for the end2end tests; install it with:\n  apt-get install -y chromium")
    })?;
    let bin = build(false)?;

    eprintln!("xtask: integration manifests and fixtures");
    status(Command::new(&bin).args(["integrations", "lint"]))?;
    status(Command::new(&bin).args(["integrations", "test"]))?;

    eprintln!("xtask: unit and integration tests (SQLite and PostgreSQL)");
    let mut cmd = cargo();
    cmd.args(["test", "--release", "-p", "model", "-p", "server"]);
    if !filter.is_empty() {
        cmd.arg("--").args(&filter);
    }
    status(&mut cmd)?;

    eprintln!("xtask: end2end tests in Chromium");
    let e2e = root().join("end2end");
    if !e2e.join("node_modules").join("playwright-core").exists() {
        let mut npm = Command::new("npm");
        npm.current_dir(&e2e).args(if e2e.join("package-lock.json").exists() { vec!["ci"] } else { vec!["install"] });
        status(&mut npm)?;
    }
    let python = sdk_python(&e2e)?;
    let mut node = Command::new("node");
    node.current_dir(&e2e)
        .args(["--test", "--test-concurrency=1"])
        .env("SWITCHYARD_BIN", &bin)
        .env("CHROMIUM", &browser)
        .env("SDK_PYTHON", &python);
    if let Some(f) = filter.first() {
        node.arg(format!("--test-name-pattern={f}"));
    }
    node.arg("tests/");
    status(&mut node)?;
    eprintln!("xtask: all tests passed in {:.1} min", started.elapsed().as_secs_f64() / 60.0);
    Ok(())
}

/// A virtualenv in `end2end/.venv` with the Python SDK the tests drive.
fn sdk_python(e2e: &std::path::Path) -> Result<std::path::PathBuf> {
    let venv = e2e.join(".venv");
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python).args(["-c", "import rudderstack.analytics"]).output().is_ok_and(|o| o.status.success());
    if !ready {
        eprintln!("xtask: installing rudder-sdk-python into {}", venv.display());
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        if !made.is_ok_and(|s| s.success()) {
            bail!("cannot create a Python virtualenv; install it with:\n  apt-get install -y python3-venv");
        }
        status(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "rudder-sdk-python==2.1.9"]))?;
    }
    Ok(python)
}
