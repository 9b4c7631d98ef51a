//! The stable code of a run's error: what the Lua host classifies a failure as, what the
//! history stores beside the message, and what the CLI and the API show. A primitive of its
//! own so that `lua/` (which produces codes) and `history/` (which stores them) share one enum
//! without knowing each other.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stable error codes, stored in the history and shown by the CLI and API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The script did not load: syntax error, error at the top level, or an invalid spec.
    Load,
    /// A parameter was unknown, missing or of the wrong type.
    Params,
    /// `run` raised an error.
    Run,
    /// The time limit passed.
    Timeout,
    /// The memory limit was reached.
    Memory,
    /// The run was cancelled.
    Cancelled,
    /// The worker process died.
    Crashed,
    /// The process that ran it went away (daemon crash); set at the next start.
    Interrupted,
    /// A code this version does not know, read from a history another version wrote: kept as
    /// written, so it is shown unchanged and never makes a read fail. Never produced here.
    Other(String),
}

impl ErrorCode {
    /// Every code this version produces, in the order of the docs.
    pub const KNOWN: [ErrorCode; 8] = [
        ErrorCode::Load,
        ErrorCode::Params,
        ErrorCode::Run,
        ErrorCode::Timeout,
        ErrorCode::Memory,
        ErrorCode::Cancelled,
        ErrorCode::Crashed,
        ErrorCode::Interrupted,
    ];

    /// The stable name.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Load => "load",
            ErrorCode::Params => "params",
            ErrorCode::Run => "run",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Memory => "memory",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Crashed => "crashed",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Other(s) => s,
        }
    }

    /// The code named `s`: one of [`ErrorCode::KNOWN`], or [`ErrorCode::Other`] keeping `s`.
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .into_iter()
            .find(|c| c.as_str() == s)
            .unwrap_or_else(|| ErrorCode::Other(s.to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_keep_their_names_and_unknown_ones_their_text() {
        for c in ErrorCode::KNOWN {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
        }
        let names: Vec<_> = ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
        assert_eq!(
            names,
            [
                "load",
                "params",
                "run",
                "timeout",
                "memory",
                "cancelled",
                "crashed",
                "interrupted"
            ]
        );
        // A code written by another version reads back as it was and is written back unchanged.
        let odd: ErrorCode = serde_json::from_str("\"worker_lost\"").unwrap();
        assert_eq!(odd, ErrorCode::Other("worker_lost".into()));
        assert_eq!(serde_json::to_string(&odd).unwrap(), "\"worker_lost\"");
    }
}
