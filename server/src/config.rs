//! Configuration: flag > `SWITCHYARD_*` env > TOML file (`--config`) > default, validated before
//! anything binds or opens. Errors name the key and the problem; the CLI exits 2 on them.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Options every subcommand that touches the database takes.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// TOML configuration file; every flag can also be set there.
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and generated key files [default: ./data]
    #[arg(long, global = true, env = "SWITCHYARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite:PATH or postgres://… [default: a SQLite file in the data dir]. Also read from
    /// DATABASE_URL when SWITCHYARD_DATABASE_URL is not set.
    #[arg(long, global = true, env = "SWITCHYARD_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Log format: pretty or json [default: pretty]
    #[arg(long, global = true, env = "SWITCHYARD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Options of `serve` only.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:3000]
    #[arg(long, env = "SWITCHYARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The URL people reach this server at, used in links [default: http://LISTEN]
    #[arg(long, env = "SWITCHYARD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Allow destinations on private and loopback addresses [default: false]
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS", value_name = "BOOL",
          num_args = 0..=1, default_missing_value = "true")]
    pub allow_private_destinations: Option<String>,
    /// Apply this workspace file at start, before listening.
    #[arg(long, env = "SWITCHYARD_WORKSPACE", value_name = "FILE")]
    pub workspace: Option<PathBuf>,
    /// What this node does: all (default), ingest (API and tracking, no delivery) or worker
    /// (delivery; the API is served too)
    #[arg(long, env = "SWITCHYARD_MODE", value_name = "MODE")]
    pub mode: Option<String>,
}

/// The TOML file: the same keys as the flags, in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    log_format: Option<String>,
    public_url: Option<String>,
    allow_private_destinations: Option<bool>,
    workspace: Option<PathBuf>,
    session_key: Option<String>,
    secrets_key: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    max_message_bytes: Option<u64>,
    max_request_bytes: Option<u64>,
    max_batch_messages: Option<u64>,
    ingest_queue: Option<u64>,
    commit_interval_us: Option<u64>,
    dedupe_window_secs: Option<u64>,
    event_retention_days: Option<u64>,
    durability: Option<String>,
    mode: Option<String>,
    delivery_lease_secs: Option<u64>,
    queue_vacuum_rows: Option<u64>,
    alert_url: Option<String>,
    retry_schedule: Option<Vec<f64>>,
    retry_every_secs: Option<f64>,
    retry_max_age_secs: Option<f64>,
    retry_max_attempts: Option<u32>,
    attempt_retention_days: Option<u64>,
    attempt_request_bytes: Option<u64>,
    attempt_response_bytes: Option<u64>,
    delivery_timeout_secs: Option<u64>,
}

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    All,
    Ingest,
    Worker,
}

impl Mode {
    /// True when this node routes and delivers events.
    pub fn delivers(self) -> bool {
        self != Mode::Ingest
    }
}

/// How hard a commit holds on (SQLite; PostgreSQL follows its own `synchronous_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the process (WAL, synchronous=NORMAL).
    Normal,
    /// Also survives power loss: fsync on every commit (synchronous=FULL).
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub log_format: LogFormat,
    pub public_url: Option<String>,
    pub allow_private_destinations: bool,
    pub workspace: Option<PathBuf>,
    /// Base64 of 64 bytes; generated into the data dir when absent.
    pub session_key: Option<String>,
    /// Base64 of 32 bytes; generated into the data dir when absent.
    pub secrets_key: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub max_message_bytes: usize,
    pub max_request_bytes: usize,
    pub max_batch_messages: usize,
    /// Requests that may wait for the event writer; more get 503 with `Retry-After`.
    pub ingest_queue: usize,
    /// SQLite: while events keep arriving, group commits start at most this far apart.
    pub commit_interval_us: u64,
    pub dedupe_window_secs: u64,
    pub event_retention_days: u64,
    pub durability: Durability,
    pub mode: Mode,
    /// How long a claimed delivery stays with its worker before another may take it.
    pub delivery_lease_secs: u64,
    /// PostgreSQL: the delivery queue is vacuumed once it holds this many dead row versions,
    /// plus a twentieth of its live rows.
    pub queue_vacuum_rows: u64,
    /// Where alerts go (a webhook or Slack incoming-webhook URL).
    pub alert_url: Option<String>,
    /// The retry policy of every destination that does not set its own.
    pub retry: crate::deliver::schedule::RetryPolicy,
    /// Attempts are kept this many days.
    pub attempt_retention_days: u64,
    /// How much of a request body (bytes) the attempt log keeps.
    pub attempt_request_bytes: usize,
    /// How much of a response body (bytes) the attempt log keeps.
    pub attempt_response_bytes: usize,
    /// How long a request to an HTTP destination may take before it counts as failed (retried).
    pub delivery_timeout_secs: u64,
}

impl Config {
    /// What the transports are allowed and how long they wait.
    pub fn transport_options(&self) -> crate::transport::Options {
        crate::transport::Options {
            allow_private: self.allow_private_destinations,
            timeout: std::time::Duration::from_secs(self.delivery_timeout_secs),
            response_bytes: self.attempt_response_bytes,
        }
    }
}

/// The most requests `ingest_queue` lets wait: beyond it, waiting requests only hold memory.
const MAX_INGEST_QUEUE: u64 = 1 << 20;

/// A longer wait between commits would only add to every acknowledgement's latency.
const MAX_COMMIT_INTERVAL_US: u64 = 50_000;

/// A number from `SWITCHYARD_<KEY>`, else the file, else the default; at least `min`.
fn number(key: &str, file: Option<u64>, default: u64, min: u64) -> Result<u64, ConfigError> {
    let value = match env(&format!("SWITCHYARD_{}", key.to_uppercase())) {
        Some(v) => v.trim().parse::<u64>().map_err(|_| bad(key, format!("'{v}' is not a whole number")))?,
        None => file.unwrap_or(default),
    };
    if value < min {
        return Err(bad(key, format!("must be at least {min}, got {value}")));
    }
    Ok(value)
}

/// The global retry policy: `retry_schedule` (seconds, comma-separated in the environment),
/// `retry_every_secs`, `retry_max_age_secs`, `retry_max_attempts`.
fn retry_policy(file: &FileConfig) -> Result<crate::deliver::schedule::RetryPolicy, ConfigError> {
    let float = |key: &str, file: Option<f64>| -> Result<Option<f64>, ConfigError> {
        match env(&format!("SWITCHYARD_{}", key.to_uppercase())) {
            Some(v) => v.trim().parse::<f64>().map(Some).map_err(|_| bad(key, format!("'{v}' is not a number of seconds"))),
            None => Ok(file),
        }
    };
    let schedule = match env("SWITCHYARD_RETRY_SCHEDULE") {
        Some(v) => Some(
            v.split(',')
                .map(|p| p.trim().parse::<f64>().map_err(|_| bad("retry_schedule", format!("'{p}' is not a number of seconds"))))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => file.retry_schedule.clone(),
    };
    let max_attempts = match env("SWITCHYARD_RETRY_MAX_ATTEMPTS") {
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| bad("retry_max_attempts", format!("'{v}' is not a whole number")))?),
        None => file.retry_max_attempts,
    };
    let patch = crate::deliver::schedule::PolicyPatch {
        schedule,
        then_every: float("retry_every_secs", file.retry_every_secs)?,
        max_age_secs: float("retry_max_age_secs", file.retry_max_age_secs)?,
        max_attempts,
        ..Default::default()
    };
    patch.check(None).map_err(|m| bad("retry", m))?;
    Ok(patch.apply(&crate::deliver::schedule::RetryPolicy::default()))
}

/// A configuration problem: names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), problem: problem.into() }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    pub fn load(common: &CommonArgs, serve: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &common.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let retry = retry_policy(&file)?;
        let listen_raw = serve.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            bad("listen", format!("'{listen_raw}' is not a socket address (expected HOST:PORT, like 127.0.0.1:3000)"))
        })?;
        let data_dir = common.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./data"));
        if data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        let database_url = match common.database_url.clone().or_else(|| env("DATABASE_URL")).or(file.database_url) {
            Some(url) => {
                crate::store::backend_of(&url).map_err(|e| bad("database_url", format!("'{}': {e}", crate::store::redact(&url))))?;
                url
            }
            None => format!("sqlite://{}", data_dir.join("switchyard.db").display()),
        };
        let log_format = match common.log_format.clone().or(file.log_format).as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("log_format", format!("'{other}' is not one of: pretty, json"))),
        };
        let public_url = serve.public_url.clone().or(file.public_url);
        if let Some(u) = &public_url {
            let parsed = url::Url::parse(u).map_err(|e| bad("public_url", format!("'{u}': {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("public_url", format!("'{u}' must start with http:// or https://")));
            }
        }
        // The environment counts for every subcommand (`workspace apply` saves destinations too).
        let allow_private_destinations = match &serve.allow_private_destinations.clone().or_else(|| env("SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS")) {
            Some(v) => parse_bool(v).ok_or_else(|| bad("allow_private_destinations", format!("'{v}' is not true or false")))?,
            None => file.allow_private_destinations.unwrap_or(false),
        };
        let session_key = env("SWITCHYARD_SESSION_KEY").or(file.session_key);
        if let Some(k) = &session_key {
            crate::keys::decode_key(k, 64).map_err(|e| bad("session_key", e))?;
        }
        let secrets_key = env("SWITCHYARD_SECRETS_KEY").or(file.secrets_key);
        if let Some(k) = &secrets_key {
            crate::keys::decode_key(k, 32).map_err(|e| bad("secrets_key", e))?;
        }
        let workspace = serve.workspace.clone().or(file.workspace);
        let proxies = match env("SWITCHYARD_TRUSTED_PROXIES") {
            Some(v) => v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = proxies
            .iter()
            .map(|p| p.parse().map_err(|_| bad("trusted_proxies", format!("'{p}' is not an IP address"))))
            .collect::<Result<Vec<_>, _>>()?;
        let durability = match env("SWITCHYARD_DURABILITY").or(file.durability).as_deref() {
            None | Some("normal") => Durability::Normal,
            Some("fsync") => Durability::Fsync,
            Some(other) => return Err(bad("durability", format!("'{other}' is not one of: normal, fsync"))),
        };
        let mode = match serve.mode.clone().or(file.mode).as_deref() {
            None | Some("all") => Mode::All,
            Some("ingest") => Mode::Ingest,
            Some("worker") => Mode::Worker,
            Some(other) => return Err(bad("mode", format!("'{other}' is not one of: all, ingest, worker"))),
        };
        let alert_url = env("SWITCHYARD_ALERT_URL").or(file.alert_url);
        if let Some(u) = &alert_url {
            let parsed = url::Url::parse(u).map_err(|e| bad("alert_url", format!("'{u}': {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("alert_url", format!("'{u}' must start with http:// or https://")));
            }
        }
        Ok(Config {
            retry,
            attempt_retention_days: number("attempt_retention_days", file.attempt_retention_days, 7, 1)?,
            attempt_request_bytes: number("attempt_request_bytes", file.attempt_request_bytes, 16 * 1024, 64)? as usize,
            attempt_response_bytes: number("attempt_response_bytes", file.attempt_response_bytes, 4096, 64)? as usize,
            delivery_timeout_secs: number("delivery_timeout_secs", file.delivery_timeout_secs, 10, 1)?,
            alert_url,
            mode,
            delivery_lease_secs: number("delivery_lease_secs", file.delivery_lease_secs, 60, 1)?,
            queue_vacuum_rows: number("queue_vacuum_rows", file.queue_vacuum_rows, 5000, 1)?,
            trusted_proxies,
            max_message_bytes: number("max_message_bytes", file.max_message_bytes, 32 * 1024, 1024)? as usize,
            max_request_bytes: number("max_request_bytes", file.max_request_bytes, 500 * 1024, 1024)? as usize,
            max_batch_messages: number("max_batch_messages", file.max_batch_messages, 2500, 1)? as usize,
            ingest_queue: match number("ingest_queue", file.ingest_queue, crate::ingest::writer::DEFAULT_QUEUE as u64, 1)? {
                n if n > MAX_INGEST_QUEUE => return Err(bad("ingest_queue", format!("must be at most {MAX_INGEST_QUEUE}, got {n}"))),
                n => n as usize,
            },
            commit_interval_us: match number("commit_interval_us", file.commit_interval_us, crate::ingest::writer::DEFAULT_COMMIT_INTERVAL.as_micros() as u64, 0)? {
                n if n > MAX_COMMIT_INTERVAL_US => return Err(bad("commit_interval_us", format!("must be at most {MAX_COMMIT_INTERVAL_US} (50 ms), got {n}"))),
                n => n,
            },
            dedupe_window_secs: number("dedupe_window_secs", file.dedupe_window_secs, 24 * 3600, 0)?,
            event_retention_days: number("event_retention_days", file.event_retention_days, 30, 1)?,
            durability,
            listen,
            data_dir,
            database_url,
            log_format,
            public_url,
            allow_private_destinations,
            workspace,
            session_key,
            secrets_key,
        })
    }

    /// The URL to print in links: `public_url`, else `http://` + the bound address.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        let key = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field"))
            .map(str::to_string)
            .unwrap_or_else(|| "config".into());
        bad(&key, format!("in {}: {}", path.display(), e.to_string().trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let f = file("listen = \"127.0.0.1:4000\"\nlog_format = \"json\"\n");
        let common = CommonArgs { config: Some(f.path().into()), ..Default::default() };
        let c = Config::load(&common, &ServeArgs::default()).unwrap();
        assert_eq!(c.listen.port(), 4000);
        assert_eq!(c.log_format, LogFormat::Json);
        let serve = ServeArgs { listen: Some("127.0.0.1:5000".into()), ..Default::default() };
        assert_eq!(Config::load(&common, &serve).unwrap().listen.port(), 5000);
        let c = Config::load(&CommonArgs::default(), &ServeArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let f = file("lisen = \"127.0.0.1:4000\"\n");
        let common = CommonArgs { config: Some(f.path().into()), ..Default::default() };
        let err = Config::load(&common, &ServeArgs::default()).unwrap_err();
        assert_eq!(err.key, "lisen", "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let serve = ServeArgs { listen: Some("nowhere".into()), ..Default::default() };
        let err = Config::load(&CommonArgs::default(), &serve).unwrap_err();
        assert_eq!(err.key, "listen");
        let common = CommonArgs { database_url: Some("mysql://x".into()), ..Default::default() };
        assert_eq!(Config::load(&common, &ServeArgs::default()).unwrap_err().key, "database_url");
        let common = CommonArgs { log_format: Some("xml".into()), ..Default::default() };
        assert_eq!(Config::load(&common, &ServeArgs::default()).unwrap_err().key, "log_format");
    }

    #[test]
    fn the_commit_interval_is_bounded() {
        let load = |text: &str| {
            let f = file(text);
            Config::load(&CommonArgs { config: Some(f.path().into()), ..Default::default() }, &ServeArgs::default())
        };
        assert_eq!(load("").unwrap().commit_interval_us, 500);
        assert_eq!(load("commit_interval_us = 0\n").unwrap().commit_interval_us, 0);
        let err = load("commit_interval_us = 50001\n").unwrap_err();
        assert_eq!(err.key, "commit_interval_us");
        assert!(err.to_string().contains("at most 50000"), "{err}");
    }
}
