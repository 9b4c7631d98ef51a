//! Turning mlua errors into [`ScriptError`]s: a stable code, a one-line message that names the
//! script file and line, and the traceback kept apart.

pub use crate::error_code::ErrorCode;

use super::ScriptError;
use super::limits::{Guard, LUA_MEMORY_MESSAGE};

/// Classifies an error raised while loading (`phase` = Load) or running (`phase` = Run) a script.
/// A termination recorded by the guard wins over whatever message reached the top.
pub fn classify(err: &mlua::Error, guard: &Guard, phase: ErrorCode) -> ScriptError {
    if is_memory_error(err) {
        guard.note_memory();
    }
    if let Some(t) = guard.termination() {
        return guard.error_for(t);
    }
    let (message, traceback) = split(err);
    let code = match err {
        mlua::Error::SyntaxError { .. } => ErrorCode::Load,
        _ => phase,
    };
    ScriptError {
        code,
        message,
        traceback,
    }
}

fn is_memory_error(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        mlua::Error::WithContext { cause, .. } => is_memory_error(cause),
        mlua::Error::RuntimeError(m) => m.starts_with(LUA_MEMORY_MESSAGE),
        _ => false,
    }
}

/// Splits an error into a message (with the innermost script location prefixed when the error
/// came from a host function) and a traceback.
pub(crate) fn split(err: &mlua::Error) -> (String, Option<String>) {
    match err {
        mlua::Error::CallbackError { traceback, cause } => {
            let (inner, inner_tb) = split(cause);
            let traceback = inner_tb.unwrap_or_else(|| traceback.clone());
            let message = match script_location(&traceback) {
                Some(loc)
                    if !inner.starts_with(&loc) && !super::host_error::has_location(&inner) =>
                {
                    format!("{loc}: {inner}")
                }
                _ => inner,
            };
            (message, Some(traceback))
        }
        mlua::Error::WithContext { context, cause } => {
            let (inner, tb) = split(cause);
            (format!("{context}: {inner}"), tb)
        }
        mlua::Error::SyntaxError { message, .. } => (message.trim_end().to_string(), None),
        mlua::Error::RuntimeError(text) => match text.split_once("\nstack traceback:") {
            Some((msg, tb)) => (
                msg.trim_end().to_string(),
                Some(format!("stack traceback:{tb}")),
            ),
            None => (text.trim_end().to_string(), None),
        },
        mlua::Error::ExternalError(e) => (e.to_string(), None),
        other => (other.to_string(), None),
    }
}

/// The first frame of a traceback that lies in a script or plugin (`scripts/x.lua:12`).
pub(crate) fn script_location(traceback: &str) -> Option<String> {
    traceback.lines().map(str::trim).find_map(|line| {
        let (file, rest) = line.split_once(".lua:")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty() && !file.starts_with('[')).then(|| format!("{file}.lua:{digits}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_from_traceback() {
        let tb = "stack traceback:\n\t[C]: in ?\n\t[C]: in function 'ferry.secret'\n\tscripts/x.lua:7: in function <scripts/x.lua:3>";
        assert_eq!(script_location(tb).as_deref(), Some("scripts/x.lua:7"));
        assert_eq!(script_location("stack traceback:\n\t[C]: in ?"), None);
    }
}
