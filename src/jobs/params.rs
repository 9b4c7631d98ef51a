//! Declared job parameters and the conversion of given values to their types.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// Any text.
    String,
    /// A whole number (i64).
    Integer,
    /// Any number.
    Number,
    /// true/false (also yes/no, 1/0 from the command line).
    Boolean,
    /// A list: a JSON array from the API, JSON text (`-p ids=[1,2]`) from the command line;
    /// its items have the spec's `items` type when one is declared.
    Array,
    /// A table of names: a JSON object from the API, JSON text (`-p f={"a":1}`) from the
    /// command line.
    Object,
}

impl ParamType {
    /// Parses the name used in job specs.
    pub fn parse(name: &str) -> Option<ParamType> {
        match name {
            "string" => Some(ParamType::String),
            "integer" => Some(ParamType::Integer),
            "number" => Some(ParamType::Number),
            "boolean" => Some(ParamType::Boolean),
            "array" => Some(ParamType::Array),
            "object" => Some(ParamType::Object),
            _ => None,
        }
    }

    /// The name used in job specs and messages.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
        }
    }

    /// The type names, for messages.
    pub const NAMES: &'static str =
        "\"string\", \"integer\", \"number\", \"boolean\", \"array\" or \"object\"";

    /// Converts text (from `-p key=value` or a query string) to this type.
    pub fn from_text(self, text: &str) -> Option<Value> {
        match self {
            ParamType::String => Some(Value::String(text.to_string())),
            ParamType::Integer => text.trim().parse::<i64>().ok().map(Value::from),
            ParamType::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            ParamType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Some(Value::Bool(true)),
                "false" | "no" | "0" | "off" => Some(Value::Bool(false)),
                _ => None,
            },
            ParamType::Array | ParamType::Object => serde_json::from_str::<Value>(text.trim())
                .ok()
                .filter(|v| self.from_json(v).is_some()),
        }
    }

    /// Checks a JSON value against this type; text is converted as from the command line.
    pub fn from_json(self, v: &Value) -> Option<Value> {
        match (self, v) {
            (_, Value::String(s)) => self.from_text(s),
            (ParamType::Integer, Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(Value::from),
            (ParamType::Number, Value::Number(_)) => Some(v.clone()),
            (ParamType::Boolean, Value::Bool(_)) => Some(v.clone()),
            (ParamType::Array, Value::Array(_)) | (ParamType::Object, Value::Object(_)) => {
                Some(v.clone())
            }
            // An empty Lua table is an empty JSON object: as an array default it is `[]`.
            (ParamType::Array, Value::Object(m)) if m.is_empty() => Some(Value::Array(Vec::new())),
            _ => None,
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    /// The type values are converted to.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// For an `array`: the type of its items, when declared (`items = "integer"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ParamType>,
    /// Whether a value must be given (when there is no default).
    pub required: bool,
    /// Used when no value is given.
    pub default: Option<Value>,
    /// For people.
    pub description: Option<String>,
    /// A credential: sealed at rest in the history, masked wherever it is shown (params named
    /// like `password` or `token` are treated so without saying).
    #[serde(default)]
    pub secret: bool,
}

/// Given parameter values: text from the command line, or JSON from the API.
#[derive(Debug, Clone)]
pub enum GivenParams {
    /// `-p key=value` pairs.
    Text(Vec<(String, String)>),
    /// A JSON object.
    Json(Map<String, Value>),
}

/// Why given parameters were refused; names the parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// The job does not declare it.
    #[error("unknown param `{name}`; {known}")]
    Unknown {
        /// The param given.
        name: String,
        /// The declared ones, for the message.
        known: String,
    },
    /// The value does not convert to the declared type.
    #[error("param `{name}`: expected {expected}, got {got}")]
    Type {
        /// The param.
        name: String,
        /// The declared type.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A required param was not given.
    #[error("param `{name}` is required ({kind})")]
    Missing {
        /// The param.
        name: String,
        /// Its type.
        kind: &'static str,
    },
    /// `-p` without `=`.
    #[error("param `{0}`: expected key=value")]
    Syntax(String),
    /// An item of an array does not convert to the declared item type.
    #[error("param `{name}`: item {index}: expected {expected}, got {got}")]
    Item {
        /// The param.
        name: String,
        /// The item's position, from 1.
        index: usize,
        /// The declared item type.
        expected: &'static str,
        /// The item given.
        got: String,
    },
}

impl ParamError {
    /// The name of the param the error is about.
    pub fn name(&self) -> &str {
        match self {
            ParamError::Unknown { name, .. }
            | ParamError::Type { name, .. }
            | ParamError::Missing { name, .. }
            | ParamError::Item { name, .. } => name,
            ParamError::Syntax(name) => name,
        }
    }
}

impl ParamSpec {
    /// What the param takes, for messages: `integer`, `array of integer`, `a JSON array`.
    pub fn expected(&self) -> String {
        match (self.kind, self.items) {
            (ParamType::Array, Some(item)) => format!("a JSON array of {}", item.name()),
            (ParamType::Array, None) => "a JSON array".into(),
            (ParamType::Object, _) => "a JSON object".into(),
            (k, _) => k.name().into(),
        }
    }

    /// Converts the items of an array value to the declared item type.
    pub fn convert_items(&self, name: &str, v: Value) -> Result<Value, ParamError> {
        let (ParamType::Array, Some(item), Value::Array(list)) = (self.kind, self.items, &v) else {
            return Ok(v);
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, x) in list.iter().enumerate() {
            out.push(item.from_json(x).ok_or_else(|| ParamError::Item {
                name: name.to_string(),
                index: i + 1,
                expected: item.name(),
                got: x.to_string(),
            })?);
        }
        Ok(Value::Array(out))
    }
}

/// Parses one `-p key=value` argument.
pub fn parse_pair(arg: &str) -> Result<(String, String), ParamError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(ParamError::Syntax(arg.to_string())),
    }
}

/// Validates and converts given values against the declarations, filling in defaults.
pub fn resolve(
    specs: &BTreeMap<String, ParamSpec>,
    given: &GivenParams,
) -> Result<Map<String, Value>, ParamError> {
    let known = || {
        if specs.is_empty() {
            "this job declares no params".to_string()
        } else {
            format!(
                "declared: {}",
                specs.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    let mut out = Map::new();
    let mut put = |name: &str, converted: Option<Value>, shown: String| -> Result<(), ParamError> {
        let spec = specs.get(name).ok_or_else(|| ParamError::Unknown {
            name: name.to_string(),
            known: known(),
        })?;
        let v = converted.ok_or_else(|| ParamError::Type {
            name: name.to_string(),
            expected: spec.kind.name(),
            got: shown,
        })?;
        let v = spec.convert_items(name, v)?;
        out.insert(name.to_string(), v);
        Ok(())
    };
    match given {
        GivenParams::Text(pairs) => {
            for (k, v) in pairs {
                let converted = specs.get(k).and_then(|s| s.kind.from_text(v));
                put(k, converted, format!("{v:?}"))?;
            }
        }
        GivenParams::Json(map) => {
            for (k, v) in map {
                let converted = specs.get(k).and_then(|s| s.kind.from_json(v));
                put(k, converted, v.to_string())?;
            }
        }
    }
    for (name, spec) in specs {
        if out.contains_key(name) {
            continue;
        }
        match &spec.default {
            Some(d) => {
                out.insert(name.clone(), d.clone());
            }
            None if spec.required => {
                return Err(ParamError::Missing {
                    name: name.clone(),
                    kind: spec.kind.name(),
                });
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> BTreeMap<String, ParamSpec> {
        let mut m = BTreeMap::new();
        let p = |kind, required, default| ParamSpec {
            kind,
            items: None,
            required,
            default,
            description: None,
            secret: false,
        };
        m.insert("n".into(), p(ParamType::Integer, true, None));
        m.insert("ratio".into(), p(ParamType::Number, false, None));
        m.insert(
            "dry".into(),
            p(ParamType::Boolean, false, Some(Value::Bool(false))),
        );
        m.insert(
            "since".into(),
            p(ParamType::String, false, Some(Value::from("1970-01-01"))),
        );
        m
    }

    #[test]
    fn converts_text_and_fills_defaults() {
        let given = GivenParams::Text(vec![
            ("n".into(), "42".into()),
            ("ratio".into(), "0.5".into()),
        ]);
        let out = resolve(&specs(), &given).unwrap();
        assert_eq!(
            Value::Object(out),
            serde_json::json!({"n": 42, "ratio": 0.5, "dry": false, "since": "1970-01-01"})
        );
    }

    #[test]
    fn errors_name_the_param() {
        let cases: Vec<(GivenParams, &str)> = vec![
            (
                GivenParams::Text(vec![("n".into(), "x".into())]),
                "param `n`: expected integer",
            ),
            (
                GivenParams::Text(vec![("n".into(), "1".into()), ("zz".into(), "1".into())]),
                "unknown param `zz`",
            ),
            (GivenParams::Text(vec![]), "param `n` is required"),
            (
                GivenParams::Json(serde_json::from_str(r#"{"n": 1.5}"#).unwrap()),
                "param `n`: expected integer",
            ),
            (
                GivenParams::Json(serde_json::from_str(r#"{"n": 1, "dry": "maybe"}"#).unwrap()),
                "param `dry`: expected boolean",
            ),
        ];
        for (given, want) in cases {
            let err = resolve(&specs(), &given).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
