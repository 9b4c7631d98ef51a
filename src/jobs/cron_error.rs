//! Why a cron expression was refused, in words that name the field, the value and the allowed
//! range (`hour 25 is out of range 0-23`).
//!
//! croner says only "Component error: Number out of bounds". To find the field at fault, each
//! field is parsed alone (every other field `*`), so croner stays the one judge of what is valid
//! and this module only explains its verdict.

use croner::parser::{CronParser, Seconds};

/// A field of a cron expression and the values it accepts.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    min: u64,
    max: u64,
    /// Names accepted besides numbers, for the message.
    names: Option<&'static str>,
}

const fn field(name: &'static str, min: u64, max: u64, names: Option<&'static str>) -> Field {
    Field {
        name,
        min,
        max,
        names,
    }
}

const SECOND: Field = field("second", 0, 59, None);
const MINUTE: Field = field("minute", 0, 59, None);
const HOUR: Field = field("hour", 0, 23, None);
const DAY_OF_MONTH: Field = field("day of month", 1, 31, None);
const MONTH: Field = field("month", 1, 12, Some("JAN-DEC"));
const DAY_OF_WEEK: Field = field("day of week", 0, 7, Some("SUN-SAT; 0 and 7 are Sunday"));

/// The macros croner knows.
const MACROS: &str = "@yearly, @annually, @monthly, @weekly, @daily or @hourly";

fn parses(expr: &str) -> Result<(), String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Explains why croner refused `expr` (whose error was `croner_says`): which field, which
/// value, what range. Falls back to croner's own words when no single field is at fault.
pub fn explain(expr: &str, croner_says: &str) -> String {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return format!("{trimmed:?} is not a known macro; expected {MACROS}");
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let layout: &[Field] = match fields.len() {
        5 => &[MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        6 => &[SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        _ => return croner_says.to_string(),
    };
    for (i, field) in layout.iter().enumerate() {
        let alone = |text: &str| {
            let mut probe: Vec<&str> = vec!["*"; fields.len()];
            probe[i] = text;
            parses(&probe.join(" "))
        };
        if alone(fields[i]).is_ok() {
            continue;
        }
        // The first item of a list that fails alone is the one to name.
        let item = fields[i]
            .split(',')
            .find(|item| alone(item).is_err())
            .unwrap_or(fields[i]);
        return describe(field, item);
    }
    croner_says.to_string()
}

/// The message for one refused item (`25`, `5-2`, `*/0`, `x`) of a field.
fn describe(field: &Field, item: &str) -> String {
    let Field {
        name,
        min,
        max,
        names,
    } = *field;
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    // Day of week `5#2` (second Friday) and `5L` (last Friday): the number is before the mark.
    let range = range
        .split('#')
        .next()
        .unwrap_or(range)
        .trim_end_matches(['L', 'l', 'W', 'w']);
    let bounds: Vec<&str> = if range == "*" {
        Vec::new()
    } else {
        range.split('-').collect()
    };
    for b in &bounds {
        if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) {
            match b.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => {}
                _ => return format!("{name} {b} is out of range {min}-{max}"),
            }
        }
    }
    if let [a, b] = bounds[..]
        && let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>())
        && a > b
    {
        return format!("{name} range {a}-{b} runs backwards; write the smaller value first");
    }
    if let Some(step) = step {
        match step.parse::<u64>() {
            Ok(0) => return format!("{name} step 0 in {item:?}: a step must be at least 1"),
            Ok(_) => {}
            Err(_) => {
                return format!("{name} step {step:?} in {item:?} is not a whole number");
            }
        }
    }
    let names = names.map(|n| format!(" (or {n})")).unwrap_or_default();
    format!(
        "{name} {item:?} is not valid; expected a value in {min}-{max}{names}, a range like \
         {min}-{max}, a list like {min},{max}, a step like */2, or *"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(expr: &str) -> String {
        let croner_says = parses(expr).expect_err("the expression should be refused");
        explain(expr, &croner_says)
    }

    #[test]
    fn names_field_value_and_range() {
        for (expr, expected) in [
            ("61 * * * *", "minute 61 is out of range 0-59"),
            ("0 25 * * *", "hour 25 is out of range 0-23"),
            ("0 0 32 * *", "day of month 32 is out of range 1-31"),
            ("0 0 0 * *", "day of month 0 is out of range 1-31"),
            ("0 0 * 13 *", "month 13 is out of range 1-12"),
            ("0 0 * * 8", "day of week 8 is out of range 0-7"),
            ("60 0 0 * * *", "second 60 is out of range 0-59"),
            ("0 1,2,99 * * *", "hour 99 is out of range 0-23"),
            ("0 20-30 * * *", "hour 30 is out of range 0-23"),
            ("0 5-2 * * *", "hour range 5-2 runs backwards"),
            (
                "*/0 * * * *",
                "minute step 0 in \"*/0\": a step must be at least 1",
            ),
            (
                "0 0 * FOO *",
                "month \"FOO\" is not valid; expected a value in 1-12 (or JAN-DEC)",
            ),
            ("@nightly", "\"@nightly\" is not a known macro"),
        ] {
            let got = why(expr);
            assert!(got.contains(expected), "{expr}: {got}");
        }
    }
}
