//! Secret params sealed at rest: the history never holds a credential in plain text.
//!
//! A param is secret when its declaration says `secret = true`, when its name says so
//! (`password`, `token`, ... see [`crate::redact::is_secret_name`]) or when its value holds a URL
//! with a password. Such a value is stored as `{"$sealed": "v1:…", "shown": "***"}`: the value
//! encrypted with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`, an audited AEAD with
//! random 192-bit nonces, so no nonce bookkeeping) under the installation's key, and how the API
//! and CLI show it. Queued runs and retries carry the sealed form; it is opened only to hand the
//! values to the run's worker.
//!
//! The key is `FERRY_SECRET_KEY` (64 hex digits) when set, else the file
//! `data/.ferry/secret.key`, created with mode 0600 on first use. Losing the key makes queued runs
//! with secret params fail with a message saying so; nothing else depends on it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};

use super::params::ParamSpec;
use crate::config::Config;
use crate::redact;

/// The key of a sealed value's object.
pub const SEALED: &str = "$sealed";
/// The environment variable that gives the key.
pub const KEY_ENV: &str = "FERRY_SECRET_KEY";
const VERSION: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or created.
    #[error("secret key {path}: {source}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key is not 32 bytes written as 64 hex digits.
    #[error("secret key from {from}: expected 64 hex digits (32 bytes)")]
    BadKey {
        /// Where it came from (the variable or the file).
        from: String,
    },
    /// A sealed value could not be opened.
    #[error(
        "param `{param}` is sealed with another key than this installation's (was {key} replaced?) or damaged"
    )]
    Open {
        /// The param.
        param: String,
        /// Where the key comes from.
        key: String,
    },
}

/// Seals and opens secret params with the installation's key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    from: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(key from {})", self.from)
    }
}

/// Where the key file of a project lives.
pub fn key_path(config: &Config) -> PathBuf {
    config.data_dir.join(".ferry").join("secret.key")
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sealer {
    /// The sealer of a project: the key from `FERRY_SECRET_KEY`, or from the key file (created
    /// when missing).
    pub fn for_config(config: &Config) -> Result<Sealer, SealError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            let key = parse_hex(&text).ok_or_else(|| SealError::BadKey {
                from: KEY_ENV.into(),
            })?;
            return Ok(Sealer::from_key(key, KEY_ENV.into()));
        }
        let path = key_path(config);
        let io = |source| SealError::KeyFile {
            path: path.clone(),
            source,
        };
        let shown = config.display_path(&path);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = parse_hex(&text).ok_or_else(|| SealError::BadKey {
                    from: shown.clone(),
                })?;
                return Ok(Sealer::from_key(key, shown));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        // Written to a temp file with 0600 and linked into place without replacing: two
        // processes creating the key at once agree on the one that landed first.
        let tmp = path.with_extension(format!("key.{}", std::process::id()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(to_hex(&key).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Sealer::from_key(key.into(), shown)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Sealer::for_config(config),
            Err(e) => Err(io(e)),
        }
    }

    /// A sealer over a given key (tests, tools).
    pub fn from_key(key: [u8; 32], from: String) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
            from,
        }
    }

    /// The params with every secret value sealed (see the module doc for which are secret).
    /// Values sealed already stay as they are.
    pub fn seal_params(
        &self,
        params: Map<String, Value>,
        decls: &std::collections::BTreeMap<String, ParamSpec>,
    ) -> Map<String, Value> {
        params
            .into_iter()
            .map(|(k, v)| {
                let secret = decls.get(&k).is_some_and(|d| d.secret)
                    || redact::is_secret_name(&k)
                    || !redact::param_secrets(&v).is_empty();
                if !secret || is_sealed(&v) || v.is_null() {
                    return (k, v);
                }
                let shown = if decls.get(&k).is_some_and(|d| d.secret) {
                    Value::String(redact::MASK.into())
                } else {
                    redact::mask_params(&Value::Object(Map::from_iter([(k.clone(), v.clone())])))
                        .get(&k)
                        .cloned()
                        .unwrap_or(Value::String(redact::MASK.into()))
                };
                let sealed = self.seal(&v);
                let mut obj = Map::new();
                obj.insert(SEALED.into(), Value::String(sealed));
                obj.insert("shown".into(), shown);
                (k, Value::Object(obj))
            })
            .collect()
    }

    /// The params with every sealed value opened, for the run's worker.
    pub fn open_params(&self, params: &Value) -> Result<Value, SealError> {
        let Value::Object(map) = params else {
            return Ok(params.clone());
        };
        let mut out = Map::new();
        for (k, v) in map {
            let v = match sealed_text(v) {
                Some(text) => self.open(text).ok_or_else(|| SealError::Open {
                    param: k.clone(),
                    key: self.from.clone(),
                })?,
                None => v.clone(),
            };
            out.insert(k.clone(), v);
        }
        Ok(Value::Object(out))
    }

    fn seal(&self, v: &Value) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let plain = v.to_string();
        // Encryption with a valid key and nonce only fails for inputs beyond the cipher's
        // limits (2^38 bytes), which a param never reaches.
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!(
            "{VERSION}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        )
    }

    fn open(&self, text: &str) -> Option<Value> {
        let b64 = text.strip_prefix(VERSION)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), sealed)
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

fn sealed_text(v: &Value) -> Option<&str> {
    v.as_object()?.get(SEALED)?.as_str()
}

/// Whether a value is a sealed secret.
pub fn is_sealed(v: &Value) -> bool {
    sealed_text(v).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decls(secret: &[&str]) -> std::collections::BTreeMap<String, ParamSpec> {
        secret
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    ParamSpec {
                        kind: super::super::params::ParamType::String,
                        items: None,
                        required: false,
                        default: None,
                        description: None,
                        secret: true,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn secret_params_are_sealed_and_open_again() {
        let s = Sealer::from_key([7; 32], "test".into());
        let params = json!({
            "password": "hunter22",
            "dsn": "plain-looking-but-declared",
            "target": "redis://:pw9@h:6379/0",
            "table": "orders",
            "n": 3
        });
        let Value::Object(map) = params.clone() else {
            unreachable!()
        };
        let sealed = Value::Object(s.seal_params(map, &decls(&["dsn"])));
        let text = sealed.to_string();
        for secret in ["hunter22", "plain-looking-but-declared", "pw9"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(sealed["table"], "orders");
        assert_eq!(sealed["n"], 3);
        assert_eq!(sealed["password"]["shown"], "***");
        assert_eq!(sealed["dsn"]["shown"], "***");
        assert_eq!(sealed["target"]["shown"], "redis://:***@h:6379/0");
        assert_eq!(s.open_params(&sealed).unwrap(), params);
        // Sealing twice leaves sealed values alone.
        let Value::Object(again) = sealed.clone() else {
            unreachable!()
        };
        assert_eq!(Value::Object(s.seal_params(again, &decls(&[]))), sealed);
    }

    #[test]
    fn another_key_or_a_damaged_value_is_an_error_naming_the_param() {
        let a = Sealer::from_key([1; 32], "a".into());
        let b = Sealer::from_key([2; 32], "b".into());
        let Value::Object(map) = json!({"token": "t0ken"}) else {
            unreachable!()
        };
        let sealed = Value::Object(a.seal_params(map, &decls(&[])));
        let e = b.open_params(&sealed).unwrap_err().to_string();
        assert!(e.contains("`token`") && e.contains("another key"), "{e}");
        let damaged = json!({"token": {"$sealed": "v1:AAAA", "shown": "***"}});
        assert!(a.open_params(&damaged).is_err());
        assert!(parse_hex("zz").is_none());
        assert!(parse_hex(&"0".repeat(64)).is_some());
    }
}
