//! The line of a job spec key (`schedule`, `params.since.type`, `after[2].job`) in a script's
//! source, so a spec error can point at `scripts/x.lua:3` like a Lua error does.
//!
//! The spec is the table the script returns, not its text, so this is a search of the text: the
//! first line assigning the first part of the key (`schedule =`, `["schedule"] =`), then from
//! there the line assigning the next part, and so on. Comment lines are skipped. A key that is
//! not written out (the table is built by code) has no line, and the error says only the file.

/// The 1-based line where `key` is assigned in `source`, if it is written out there.
pub fn key_line(source: &str, key: &str) -> Option<u32> {
    let lines: Vec<&str> = source.lines().collect();
    let mut from = 0;
    let mut found = None;
    for part in key.split('.') {
        // `after[2]`: the index is not written in the source; look for `after`.
        let part = part.split('[').next().unwrap_or(part);
        if part.is_empty() {
            continue;
        }
        match (from..lines.len()).find(|&i| assigns(lines[i], part)) {
            Some(i) => {
                found = Some(i);
                from = i;
            }
            // A deeper part written elsewhere (or not at all): the outer key's line.
            None => break,
        }
    }
    found.and_then(|i| u32::try_from(i + 1).ok())
}

/// Whether `line` assigns `name` as a table field: `name =` or `["name"] =`, not `name ==`.
fn assigns(line: &str, name: &str) -> bool {
    let code = line.split("--").next().unwrap_or("");
    let quoted = [format!("[\"{name}\"]"), format!("['{name}']")];
    let mut at = 0;
    while let Some(pos) = code[at..].find(name) {
        let start = at + pos;
        let end = start + name.len();
        at = end;
        let before = code[..start].chars().next_back();
        let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        let word_end = !code[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if word_start && word_end && is_assignment(&code[end..]) {
            return true;
        }
    }
    quoted.iter().any(|q| {
        code.find(q.as_str())
            .is_some_and(|p| is_assignment(&code[p + q.len()..]))
    })
}

fn is_assignment(rest: &str) -> bool {
    let rest = rest.trim_start();
    rest.starts_with('=') && !rest.starts_with("==")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"-- schedule = "in a comment"
local x = 1
return {
  description = "schedule == nothing",
  schedule = { timezone = "UTC",
    cron = "0 25 * * *" },
  params = {
    since = { type = "strin" },
  },
  ["overlap"] = "sometimes",
  after = { { job = "a" }, { job = "b/c" } },
  run = function(ctx) end,
}
"#;

    #[test]
    fn finds_keys_as_written() {
        for (key, line) in [
            ("schedule", Some(5)),
            ("schedule.cron", Some(6)),
            ("schedule.timezone", Some(5)),
            ("params.since.type", Some(8)),
            ("overlap", Some(10)),
            ("after[2].job", Some(11)),
            ("timeout", None),
            ("params.until", Some(7)),
        ] {
            assert_eq!(key_line(SCRIPT, key), line, "{key}");
        }
    }
}
