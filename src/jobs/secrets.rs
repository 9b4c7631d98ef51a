//! Secrets for `ctx.secret(name)`, and the redaction that keeps their values out of logs,
//! errors, summaries and every output.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::Config;

/// Prefix of the environment variables that define secrets: `FERRY_SECRET_DB_PASSWORD` is the
/// secret `db_password` (names are matched case-insensitively).
pub const ENV_PREFIX: &str = "FERRY_SECRET_";

/// Known secrets and the redaction of their values.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    by_name: BTreeMap<String, String>,
    /// Every value to hide, longest first so that a value containing another is hidden whole.
    values: Vec<String>,
}

/// What a secret's value is replaced with.
pub use crate::redact::MASK;

impl Secrets {
    /// Secrets from the config file and the environment (the environment wins).
    pub fn from_config(config: &Config) -> Secrets {
        let mut by_name: BTreeMap<String, String> = config
            .secrets
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix(ENV_PREFIX) {
                by_name.insert(name.to_ascii_lowercase(), v);
            }
        }
        let mut values: Vec<String> = by_name
            .values()
            .filter(|v| !v.is_empty())
            .cloned()
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Secrets { by_name, values }
    }

    /// A secret's value by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Adds a value to hide that is not a named secret (a store credential, say).
    pub fn hide(&mut self, value: &str) {
        if !value.is_empty() && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_string());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// The text with every secret value replaced by `***`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// A JSON value with every string (keys included) redacted.
    pub fn redact_json(&self, v: Value) -> Value {
        if self.values.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.redact(&s).into_owned()),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| self.redact_json(i)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k).into_owned(), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_longest_first_and_inside_json() {
        let mut s = Secrets::default();
        s.hide("abc");
        s.hide("abcdef");
        assert_eq!(s.redact("x abcdef y abc"), "x *** y ***");
        let v = s.redact_json(serde_json::json!({"k": ["abc!", 1], "abc": true}));
        assert_eq!(v, serde_json::json!({"k": ["***!", 1], "***": true}));
    }
}
