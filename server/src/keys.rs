//! The session key and the secrets key: from configuration, or generated once into the data dir
//! (mode 0600). Never from source.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use std::io::Write;
use std::path::Path;

pub struct Keys {
    pub session: Vec<u8>,
    pub secrets: Vec<u8>,
}

pub fn decode_key(b64: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not valid base64 ({e}); generate one with: openssl rand -base64 {len}"))?;
    if bytes.len() != len {
        return Err(format!("must decode to {len} bytes, got {}; generate one with: openssl rand -base64 {len}", bytes.len()));
    }
    Ok(bytes)
}

/// Reads `name` from the data dir, or creates it with `len` random bytes (base64, mode 0600).
fn key_file(dir: &Path, name: &str, len: usize) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        return decode_key(&text, len).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(STANDARD.encode(&bytes).as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new key file");
            Ok(bytes)
        }
        // Another process (the CLI beside a server) made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => key_file(dir, name, len),
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
    }
}

pub fn load(config: &crate::config::Config) -> anyhow::Result<Keys> {
    std::fs::create_dir_all(&config.data_dir)?;
    let shared_db = config.database_url.starts_with("postgres");
    let mut generated = false;
    let session = match &config.session_key {
        Some(k) => decode_key(k, 64).map_err(anyhow::Error::msg)?,
        None => {
            generated = true;
            key_file(&config.data_dir, "session.key", 64)?
        }
    };
    let secrets = match &config.secrets_key {
        Some(k) => decode_key(k, 32).map_err(anyhow::Error::msg)?,
        None => {
            generated = true;
            key_file(&config.data_dir, "secrets.key", 32)?
        }
    };
    if generated && shared_db {
        tracing::warn!(
            "using key files from the data dir with PostgreSQL: every node that shares this database must be \
             given the same keys (set session_key and secrets_key, or SWITCHYARD_SESSION_KEY and SWITCHYARD_SECRETS_KEY)"
        );
    }
    Ok(Keys { session, secrets })
}
