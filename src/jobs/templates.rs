//! Job scripts generated from a template and options (`POST /api/v1/jobs`): a plain, readable
//! Lua script that calls one function of a shipped plugin (`plugins/`) with the options baked
//! in as Lua literals.
//!
//! Every value comes from a request, so nothing is pasted into code as text: strings become
//! quoted Lua literals (every quote, backslash and control byte escaped), keys that are not
//! plain identifiers become `["..."]`. The generated script's top level checks the options
//! against the plugin's own schema (`plugin.schemas.FN:check(OPTIONS)`), so loading it — which
//! `ferry check` and the API's validation do — refuses an unknown option or a bad value.

use serde_json::{Map, Value};

/// A template: which plugin function the generated job calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The name requests use (`backup`).
    pub name: &'static str,
    /// The plugin module (`require "backup"`).
    pub module: &'static str,
    /// The plugin function the job calls, and the key of its schema in `module.schemas`.
    pub function: &'static str,
    /// The secret the job passes as `password` at run time (never baked into the script).
    pub password_secret: Option<&'static str>,
    /// What the job does, for the script's header and default description.
    pub summary: &'static str,
}

/// Every template, in the order messages list them.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "export",
        module: "export",
        function: "run",
        password_secret: None,
        summary: "export a SQLite table or query to a file in a store",
    },
    Template {
        name: "import",
        module: "import",
        function: "run",
        password_secret: None,
        summary: "import files into a SQLite table",
    },
    Template {
        name: "backup",
        module: "backup",
        function: "run",
        password_secret: None,
        summary: "back a store or a SQLite database up to a backup point",
    },
    Template {
        name: "restore",
        module: "backup",
        function: "restore",
        password_secret: None,
        summary: "restore a backup into a store",
    },
    Template {
        name: "redis_import",
        module: "redis",
        function: "import",
        password_secret: Some("redis_password"),
        summary: "import Redis RDB files (or a backup) into a Redis instance",
    },
    Template {
        name: "redis_backup",
        module: "redis",
        function: "backup",
        password_secret: Some("redis_password"),
        summary: "back a Redis instance up to a backup point",
    },
];

/// Why a script could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The template is not one of [`TEMPLATES`].
    #[error("unknown template {given:?}; known templates: {known}")]
    UnknownTemplate {
        /// What the request named.
        given: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A value JSON has but Lua options cannot hold (`null`).
    #[error("option `{path}`: null is not a value; leave the option out instead")]
    Null {
        /// Where the value is (`params.include[2]`).
        path: String,
    },
    /// A password given as an option: it would be written into the script.
    #[error(
        "option `{path}`: a password is never written into a job script; define the secret `{secret}` instead (FERRY_SECRET_{upper} or the secrets file)"
    )]
    Password {
        /// The option.
        path: String,
        /// The secret the generated job reads.
        secret: &'static str,
        /// The secret's environment variable suffix.
        upper: String,
    },
}

/// The names of every template, comma-separated (for messages).
pub fn known() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The template called `name`.
pub fn find(name: &str) -> Result<&'static Template, TemplateError> {
    TEMPLATES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| TemplateError::UnknownTemplate {
            given: name.to_owned(),
            known: known(),
        })
}

/// What a generated job is: its name, template, the plugin function's options and the spec
/// keys the request gave (each any JSON value the spec accepts; the spec checks them).
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The job's name (already checked by [`super::scripts::valid_name`]).
    pub name: &'a str,
    /// The template.
    pub template: &'static Template,
    /// The options of the plugin function.
    pub params: &'a Map<String, Value>,
    /// `description`; the template's summary when absent.
    pub description: Option<&'a str>,
    /// `schedule` (a cron string or a table).
    pub schedule: Option<&'a Value>,
    /// `watch` (a folder or a table).
    pub watch: Option<&'a Value>,
}

/// The Lua source of the job.
pub fn generate(job: &Job<'_>) -> Result<String, TemplateError> {
    let t = job.template;
    if let Some(secret) = t.password_secret {
        for key in ["password", "source_password"] {
            if job.params.contains_key(key) {
                return Err(TemplateError::Password {
                    path: format!("params.{key}"),
                    secret,
                    upper: secret.to_ascii_uppercase(),
                });
            }
        }
    }
    let (m, f) = (t.module, t.function);
    let mut out = String::new();
    out.push_str(&format!(
        "-- {}: {}.\n-- Generated from the template {:?} (POST /api/v1/jobs); edit it freely.\n",
        job.name, t.summary, t.name
    ));
    out.push_str(&format!(
        "-- OPTIONS go to {m}.{f} (docs/plugins.md, `{m}`); the top level checks them against the\n-- plugin's schema, so a wrong option is refused when the script loads.\n"
    ));
    if let Some(secret) = t.password_secret {
        out.push_str(&format!(
            "-- The password comes from the secret `{secret}` (FERRY_SECRET_{}).\n",
            secret.to_ascii_uppercase()
        ));
    }
    out.push_str(&format!("local {m} = require {}\n\n", quote(m)));
    out.push_str("local OPTIONS = ");
    out.push_str(&literal(&Value::Object(job.params.clone()), 0, "params")?);
    out.push('\n');
    out.push_str(&format!("{m}.schemas.{f}:check(OPTIONS)\n\nreturn {{\n"));
    let description = job.description.unwrap_or(t.summary);
    out.push_str(&format!("  description = {},\n", quote(description)));
    if let Some(s) = job.schedule {
        out.push_str(&format!("  schedule = {},\n", literal(s, 1, "schedule")?));
    }
    if let Some(w) = job.watch {
        out.push_str(&format!("  watch = {},\n", literal(w, 1, "watch")?));
    }
    out.push_str("  run = function(ctx)\n");
    match t.password_secret {
        None => out.push_str(&format!("    return {m}.{f}(ctx, OPTIONS)\n")),
        Some(secret) => {
            out.push_str("    local o = { password = ");
            out.push_str(&format!("{m}.secret(ctx, {}) }}\n", quote(secret)));
            out.push_str("    for k, v in pairs(OPTIONS) do o[k] = v end\n");
            out.push_str(&format!("    return {m}.{f}(ctx, o)\n"));
        }
    }
    out.push_str("  end,\n}\n");
    Ok(out)
}

/// `s` as a Lua string literal: `"..."` with `\\`, `\"`, and every control byte escaped
/// (`\n`, `\r`, `\t`, otherwise `\ddd`); other bytes (UTF-8 text) are kept as they are.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    for (i, c) in s.char_indices() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                // Three digits, so a following digit cannot extend the escape.
                out.push_str(&format!("\\{:03}", bytes[i]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// A table key: `name` when it is a plain identifier, `["..."]` otherwise.
fn key(k: &str) -> String {
    let mut chars = k.chars();
    let ident = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&k);
    if ident {
        k.to_owned()
    } else {
        format!("[{}]", quote(k))
    }
}

/// A JSON value as a Lua literal, indented for `depth` (objects sorted by key, one per line).
fn literal(v: &Value, depth: usize, path: &str) -> Result<String, TemplateError> {
    Ok(match v {
        Value::Null => {
            return Err(TemplateError::Null {
                path: path.to_owned(),
            });
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            // `{:?}` keeps a decimal point or exponent, so Lua reads a float.
            (None, Some(f)) => format!("{f:?}"),
            (None, None) => n.to_string(),
        },
        Value::String(s) => quote(s),
        Value::Array(items) => {
            let parts = items
                .iter()
                .enumerate()
                .map(|(i, x)| literal(x, depth + 1, &format!("{path}[{}]", i + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            if parts.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", parts.join(", "))
            }
        }
        Value::Object(map) => {
            if map.is_empty() {
                return Ok("{}".to_owned());
            }
            let pad = "  ".repeat(depth + 1);
            let mut out = String::from("{\n");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for k in keys {
                let item = literal(&map[k], depth + 1, &format!("{path}.{k}"))?;
                out.push_str(&format!("{pad}{} = {item},\n", key(k)));
            }
            out.push_str(&"  ".repeat(depth));
            out.push('}');
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_escaped_not_pasted() {
        assert_eq!(quote("a\"b\\c\n\u{1}9"), r#""a\"b\\c\n\0019""#);
        assert_eq!(quote("]]--"), r#""]]--""#);
        assert_eq!(quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn keys_that_are_not_identifiers_are_bracketed() {
        assert_eq!(key("until"), r#"["until"]"#);
        assert_eq!(key("a b"), r#"["a b"]"#);
        assert_eq!(key("on_error"), "on_error");
    }

    #[test]
    fn literals_nest_and_refuse_null() {
        let v = json!({"b": [1, 2.5, true], "a": {"x": "y"}});
        assert_eq!(
            literal(&v, 0, "params").unwrap(),
            "{\n  a = {\n    x = \"y\",\n  },\n  b = { 1, 2.5, true },\n}"
        );
        assert_eq!(
            literal(&json!({"a": [1, null]}), 0, "params"),
            Err(TemplateError::Null {
                path: "params.a[2]".into()
            })
        );
    }

    #[test]
    fn unknown_templates_name_the_known_ones() {
        let e = find("nope").unwrap_err().to_string();
        assert!(
            e.contains("export, import, backup, restore, redis_import"),
            "{e}"
        );
    }

    #[test]
    fn passwords_are_refused() {
        let params = json!({"password": "x", "target": "redis://h"});
        let job = Job {
            name: "r",
            template: find("redis_import").unwrap(),
            params: params.as_object().unwrap(),
            description: None,
            schedule: None,
            watch: None,
        };
        assert!(matches!(
            generate(&job),
            Err(TemplateError::Password { .. })
        ));
    }
}
