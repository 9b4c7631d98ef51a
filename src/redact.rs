//! Credentials inside run params: values of params named like a password or token, and the
//! password part of URLs (`redis://:pw@host`, `s3://key:secret@...`). A run's params are shown by
//! the API and the CLI with these masked, and the worker hides them from logs, errors and
//! summaries, so a credential given as a param (the seeds' `password` fields) never comes back
//! out. The history keeps them sealed (see [`crate::jobs::seal`]): a queued run or a retry
//! still gets the values.

use serde_json::Value;

/// What a masked value shows.
pub const MASK: &str = "***";

/// Whether a param name says its value is a credential (`password`, `redis_password`,
/// `api_token`, `secret_key`, ...).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// The password of a URL with credentials (`scheme://user:password@host...`), as written.
fn url_password(text: &str) -> Option<&str> {
    let rest = &text[text.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then_some(password)
}

/// Every credential in `params`: values of secret-named params and URL passwords anywhere.
pub fn param_secrets(params: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(params, false, &mut out);
    out
}

fn collect(v: &Value, secret: bool, out: &mut Vec<String>) {
    match v {
        Value::String(s) if secret => out.push(s.clone()),
        Value::String(s) => {
            if let Some(p) = url_password(s) {
                out.push(p.to_owned());
            }
        }
        Value::Number(n) if secret => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| collect(i, secret, out)),
        Value::Object(map) => {
            for (k, v) in map {
                collect(v, secret || is_secret_name(k), out);
            }
        }
        _ => {}
    }
}

/// `params` with every credential replaced by [`MASK`].
pub fn mask_params(params: &Value) -> Value {
    mask(params, false)
}

fn mask(v: &Value, secret: bool) -> Value {
    match v {
        Value::Null | Value::Bool(_) => v.clone(),
        _ if secret => Value::String(MASK.into()),
        Value::String(s) => match url_password(s) {
            Some(p) => Value::String(s.replacen(&format!(":{p}@"), &format!(":{MASK}@"), 1)),
            None => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|i| mask(i, false)).collect()),
        // A value sealed at rest shows what was recorded for showing, never the sealed text.
        Value::Object(map) if map.contains_key(crate::jobs::seal::SEALED) => map
            .get("shown")
            .cloned()
            .unwrap_or_else(|| Value::String(MASK.into())),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), mask(v, is_secret_name(k))))
                .collect(),
        ),
        Value::Number(_) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_and_masks_credentials() {
        let p = json!({
            "target": "redis://:pw1@10.0.0.5:6379/0",
            "source": "redis://user:pw2@host/1",
            "plain": "redis://host:6379/0",
            "redis_password": "pw3",
            "api_token": 12345,
            "files": [{"file_name": "a.rdb", "size": "1"}],
            "note": "a:b@c without scheme",
        });
        let mut found = param_secrets(&p);
        found.sort();
        assert_eq!(found, ["12345", "pw1", "pw2", "pw3"]);
        let m = mask_params(&p);
        assert_eq!(m["target"], "redis://:***@10.0.0.5:6379/0");
        assert_eq!(m["source"], "redis://user:***@host/1");
        assert_eq!(m["plain"], "redis://host:6379/0");
        assert_eq!(m["redis_password"], "***");
        assert_eq!(m["api_token"], "***");
        assert_eq!(m["files"], p["files"]);
        assert_eq!(m["note"], p["note"]);
    }

    #[test]
    fn urls_without_passwords_are_left_alone() {
        assert_eq!(url_password("redis://user@host"), None);
        assert_eq!(url_password("redis://:@host"), None);
        assert_eq!(url_password("http://host/a:b@c"), None);
        assert_eq!(url_password("s3://AK:SK@bucket/x"), Some("SK"));
    }
}
