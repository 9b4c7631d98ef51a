//! Keeps the layering rules of the codemap (`src/lib.rs`, "Invariants") true: reads every source
//! file under `src/` and fails when a module names a module it must not know (`crate::X` paths,
//! grouped `use crate::{X, Y}` included), or when a crate that belongs to one module is used
//! elsewhere (mlua outside `lua/`, rusqlite outside `history/` and `db/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// For each top-level module, the top-level modules it must never name. Arrows point down:
/// `cli` → `api` → `daemon` → `jobs` → `lua` → `storage`/`formats`/`db`; primitives know nothing
/// of Lua, jobs, the history or the daemon; `lua/` knows nothing of the history or the daemon.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("cancel", UPPER),
    ("error_code", UPPER),
    ("units", UPPER),
    ("process", UPPER),
    ("storage", UPPER),
    ("formats", UPPER),
    ("db", UPPER),
    ("http", UPPER),
    (
        "lua",
        &["history", "jobs", "daemon", "api", "cli", "notify"],
    ),
    ("history", &["lua", "daemon", "api", "cli", "notify"]),
    ("jobs", &["daemon", "api", "cli"]),
    ("notify", &["daemon", "api", "cli", "lua"]),
    ("daemon", &["api", "cli"]),
    ("api", &["cli"]),
];

/// What a primitive must not name.
const UPPER: &[&str] = &[
    "lua", "jobs", "history", "daemon", "api", "cli", "notify", "config",
];

/// Crates that only one part of the tree may use: (crate path prefix, allowed folders).
const OWNED_CRATES: &[(&str, &[&str])] = &[
    ("mlua", &["src/lua/"]),
    ("rusqlite", &["src/history/", "src/db/"]),
    ("object_store", &["src/storage/"]),
    ("axum", &["src/api/"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/jobs/worker.rs` → `jobs`, `src/units.rs` →
/// `units`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The code of a file without its comments (line comments and doc comments; block comments are
/// not used in this tree) and without string literals' contents, line by line.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut code = String::new();
        let mut in_str = false;
        let mut prev = '\0';
        let chars: Vec<char> = line.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            if !in_str && c == '/' && chars.get(k + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                code.push(c);
            }
            prev = c;
            k += 1;
        }
        out.push((i + 1, code));
    }
    out
}

/// The top-level modules a line of code names through `crate::`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a, b::c, d}`: the first segment of each item.
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    names.insert(head);
                }
            }
        } else {
            let head: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !head.is_empty() {
                names.insert(head);
            }
        }
        rest = after;
    }
    names
}

#[test]
fn no_module_names_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    let mut errors = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some((_, forbidden)) = FORBIDDEN.iter().find(|(m, _)| *m == module) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (line, code) in code_lines(&text) {
            for name in named_modules(&code) {
                if forbidden.contains(&name.as_str()) {
                    errors.push(format!(
                        "{}:{line}: `{module}` names `crate::{name}`, a layer it must not know",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "layering broken:\n{}", errors.join("\n"));
}

#[test]
fn crates_stay_in_their_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut errors = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (line, code) in code_lines(&text) {
            for (krate, allowed) in OWNED_CRATES {
                let used = code.contains(&format!("{krate}::"))
                    && !code.contains(&format!("_{krate}::"))
                    && !code.contains(&format!("crate::{krate}"));
                if used && !allowed.iter().any(|a| rel.starts_with(a)) {
                    errors.push(format!(
                        "{rel}:{line}: uses `{krate}`, which only {} may use",
                        allowed.join(", ")
                    ));
                }
            }
        }
    }
    assert!(
        errors.is_empty(),
        "crates outside their module:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let names = named_modules("use crate::{jobs::owner, lua, storage::confine_path};");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec!["jobs", "lua", "storage"]
    );
    let names = named_modules("let x = crate::history::open(&c); // crate::api");
    assert!(names.contains("history") && names.contains("api"));
    let code = code_lines("let x = crate::history::open(); // crate::api::x\n\"crate::cli\"");
    assert!(named_modules(&code[0].1).contains("history"));
    assert!(!named_modules(&code[0].1).contains("api"));
    assert!(named_modules(&code[1].1).is_empty());
}
