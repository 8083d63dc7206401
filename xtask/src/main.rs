//! `cargo xtask build | serve | dev | test`: everything the project needs, with cargo alone.

mod bench;
mod site;
mod test;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  build [--debug]     build the admin app (wasm) and the switchyard binary (release by default)
  serve [ARGS…]       release build, then `switchyard serve` on SQLite under ./data (ARGS are passed on)
  dev [ARGS…]         debug build, then `switchyard serve`
  test [FILTER]       unit and integration tests on SQLite and PostgreSQL, then end2end in Chromium
  bench ingest        ingest throughput and latency on SQLite and PostgreSQL, and the bare-handler ceiling
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(args.iter().any(|a| a == "--debug")).map(|_| ()),
        Some("serve") => run_server(Profile::Release, &args[1..]),
        Some("dev") => run_server(Profile::Debug, &args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprint!("xtask: unknown command '{other}'\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Profile {
    Debug,
    Release,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { root().join(dir) }
        }
        None => root().join("target"),
    }
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    // Leptos reads this at compile time; it changes the wasm file name the page asks for.
    cmd.env_remove("LEPTOS_OUTPUT_NAME");
    cmd
}

pub fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd.status().with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

/// Builds the wasm bundle and the server; returns the binary's path.
pub fn build(debug: bool) -> Result<PathBuf> {
    let profile = if debug { Profile::Debug } else { Profile::Release };
    site::build(profile)?;
    let mut cmd = cargo();
    cmd.args(["build", "-p", "server", "--bin", "switchyard"]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    status(&mut cmd)?;
    let dir = if debug { "debug" } else { "release" };
    let bin = target_dir().join(dir).join("switchyard");
    // With CARGO_TARGET_DIR elsewhere, also leave the binary where the README says it is.
    let local = root().join("target").join(dir).join("switchyard");
    if bin != local {
        std::fs::create_dir_all(local.parent().unwrap())?;
        std::fs::copy(&bin, &local).with_context(|| format!("copy {} to {}", bin.display(), local.display()))?;
    }
    let size = std::fs::metadata(&local)?.len();
    eprintln!("xtask: binary {} ({:.1} MB)", local.display(), size as f64 / 1e6);
    Ok(local)
}

fn run_server(profile: Profile, args: &[String]) -> Result<()> {
    let bin = build(profile == Profile::Debug)?;
    let mut cmd = Command::new(&bin);
    cmd.current_dir(root()).arg("serve").args(args);
    eprintln!("xtask: starting {} serve {} (Ctrl-C stops it)", bin.display(), args.join(" "));
    status(&mut cmd)
}
