//! Secret setting values sealed at rest with the secrets key (XChaCha20-Poly1305, a random nonce
//! per write).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde_json::{Map, Value};

pub struct Cipher(XChaCha20Poly1305);

impl Cipher {
    /// `key`: the 32-byte secrets key.
    pub fn new(key: &[u8]) -> Cipher {
        Cipher(XChaCha20Poly1305::new_from_slice(key).expect("the secrets key has 32 bytes"))
    }

    /// Seals a map of secrets; an empty map seals to an empty string.
    pub fn seal(&self, secrets: &Map<String, Value>) -> String {
        if secrets.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let plain = Value::Object(secrets.clone()).to_string();
        let sealed = self.0.encrypt(XNonce::from_slice(&nonce), plain.as_bytes()).expect("sealing cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("v1:{}", B64.encode(out))
    }

    /// Opens what [`Cipher::seal`] made; a wrong key is an error naming the problem.
    pub fn open(&self, sealed: &str) -> anyhow::Result<Map<String, Value>> {
        if sealed.is_empty() {
            return Ok(Map::new());
        }
        let bytes = sealed.strip_prefix("v1:").and_then(|b| B64.decode(b).ok()).filter(|b| b.len() > 24);
        let bytes = bytes.ok_or_else(|| anyhow::anyhow!("stored secrets are damaged"))?;
        let plain = self
            .0
            .decrypt(XNonce::from_slice(&bytes[..24]), &bytes[24..])
            .map_err(|_| anyhow::anyhow!("stored secrets cannot be opened: the secrets key differs from the one they were sealed with"))?;
        Ok(serde_json::from_slice(&plain)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_wrong_key() {
        let c = Cipher::new(&[7u8; 32]);
        let mut m = Map::new();
        m.insert("api_key".into(), Value::String("s3cret".into()));
        let sealed = c.seal(&m);
        assert!(!sealed.contains("s3cret"));
        assert_ne!(sealed, c.seal(&m), "a new nonce each time");
        assert_eq!(c.open(&sealed).unwrap(), m);
        assert!(Cipher::new(&[8u8; 32]).open(&sealed).is_err());
        assert_eq!(c.open("").unwrap(), Map::new());
    }
}
