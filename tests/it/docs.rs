//! Every example in README.md and docs/ runs, so none can rot: each fenced `sh` block is run as
//! a shell script (with `ferry` on the PATH, a temporary HOME, and a daemon serving a project
//! with the shipped scripts where the examples talk to one), each `lua` block that is a whole
//! job script must pass `ferry check`, and every other `lua` block must at least compile.
//! A command that cannot run here (it installs, needs root or systemd as PID 1, or is the test
//! suite itself) is on the `SKIP` list with the reason, and the list must match the docs
//! exactly: a new command is run or consciously listed, never silently ignored.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, Project, bin};

/// Commands not run here, by their text (after line continuations are joined), with why.
const SKIP: &[(&str, &str)] = &[
    (
        "cargo run --release -- serve",
        "the daemon on the shipped examples: the daemon tests run ferry serve on copies of them",
    ),
    ("./tests/run.sh", "the test suite itself"),
    (
        "cargo install --path .",
        "installs into ~/.cargo/bin; this test runs the built binary",
    ),
    ("cargo test --test it ui::", "the test suite itself"),
    ("sudo useradd", "needs root and changes the machine's users"),
    ("sudo install", "needs root"),
    ("sudo mkdir", "needs root"),
    (
        "sudo -u ferry",
        "needs root and the ferry user; `ferry init` runs in README's block",
    ),
    ("sudo cp", "needs root"),
    (
        "sudo systemctl",
        "needs systemd as PID 1; tests/it/server.rs verifies the unit",
    ),
    ("journalctl", "needs systemd as PID 1"),
    (
        "sudo -u postgres",
        "needs root and a PostgreSQL server; tests/it/history.rs and tests/it/scale.rs start one",
    ),
    (
        "FERRY_PG_PASSWORD=",
        "needs a PostgreSQL server; tests/it/history.rs runs `ferry history migrate` and tests/it/scale.rs `ferry serve` on one",
    ),
];

/// A fenced block of a document.
struct Block {
    file: String,
    line: usize,
    lang: String,
    text: String,
}

fn blocks() -> Vec<Block> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(root).unwrap().display().to_string();
        let mut open: Option<(usize, String, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            match (&mut open, t.strip_prefix("```")) {
                (None, Some(lang)) => open = Some((i + 1, lang.trim().to_string(), String::new())),
                (Some(_), Some(_)) => {
                    let (start, lang, body) = open.take().unwrap();
                    out.push(Block {
                        file: name.clone(),
                        line: start,
                        lang,
                        text: body,
                    });
                }
                (Some((_, _, body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
    }
    out
}

/// The commands of a shell block: continuation lines joined, comments and blank lines dropped.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let l = line.trim();
        if cur.is_empty() && (l.is_empty() || l.starts_with('#')) {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(part) => {
                cur.push_str(part.trim_end());
                cur.push(' ');
            }
            None => {
                cur.push_str(l);
                out.push(strip_comment(&cur));
                cur.clear();
            }
        }
    }
    out
}

/// Drops a trailing `  # comment` (outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if i > 0 && bytes[i - 1].is_ascii_whitespace() => {
                return line[..i].trim_end().to_string();
            }
            _ => {}
        }
    }
    line.trim_end().to_string()
}

/// The index in `SKIP` of the entry that covers `cmd`.
fn skipped(cmd: &str) -> Option<usize> {
    SKIP.iter().position(|(prefix, _)| cmd.starts_with(prefix))
}

#[test]
fn every_shell_example_runs() {
    let p = Project::with_shipped_files();
    p.write("orders.csv", "id,customer,amount\n1,Ada,10.5\n2,Grace,20\n");
    // Run ids the examples name (1, 12, 42) exist and succeeded.
    for _ in 0..45 {
        let r = p.ferry(&["run", "hello"]);
        assert_eq!(r.code, 0, "{}", r.all());
    }
    let d = Daemon::start(&p);
    let home = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut used_skips = std::collections::BTreeSet::new();
    let mut ran = 0;
    for b in blocks().iter().filter(|b| b.lang == "sh") {
        let mut script = String::from("set -e\n");
        for cmd in commands(&b.text) {
            if let Some(i) = skipped(&cmd) {
                used_skips.insert(i);
                script.push_str(&format!("# skipped: {}\n", SKIP[i].1));
                continue;
            }
            let mut cmd = cmd.replace("http://127.0.0.1:7411", &d.url);
            // Streams that never end on their own are cut after a few seconds.
            if cmd.contains("/api/v1/events") {
                cmd = format!("timeout 3 {cmd} || [ $? = 124 ]");
            }
            script.push_str(&cmd);
            script.push('\n');
            ran += 1;
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(p.path())
            .env("PATH", &path)
            .env("HOME", home.path())
            // What docs/http-api.md exports in its first block, for the blocks after it.
            .env("FERRY", &d.url)
            .env("AUTH", "Authorization: Bearer none")
            .env_remove("FERRY_LOG")
            .env_remove("FERRY_ROOT")
            .env_remove("FERRY_CONFIG")
            .env_remove("FERRY_SERVER")
            .env_remove("FERRY_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:{}: the example failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}",
            b.file,
            b.line,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ran > 30, "only {ran} commands found");
    let unused: Vec<&str> = SKIP
        .iter()
        .enumerate()
        .filter(|(i, _)| !used_skips.contains(i))
        .map(|(_, (c, _))| *c)
        .collect();
    assert!(
        unused.is_empty(),
        "SKIP names commands no document has any more: {unused:?}"
    );
}

/// `-- scripts/NAME.lua` or a block that returns a table with `run`: a whole job script.
fn is_job_script(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("return {")) && text.contains("run = function")
}

#[test]
fn every_lua_example_compiles_and_every_job_script_loads() {
    let p = Project::with_shipped_files();
    // What the examples assume of the project's settings.
    p.write(
        "ferry.toml",
        "[notify.smtp]\nhost = \"smtp.example.com\"\nfrom = \"ferry <ferry@example.com>\"\n",
    );
    let lua: Vec<Block> = blocks().into_iter().filter(|b| b.lang == "lua").collect();
    assert!(lua.len() > 10, "only {} Lua blocks", lua.len());
    // Fragments: compiled (not run) by a job, each as a chunk of its own.
    std::fs::create_dir_all(p.at("data/fragments")).unwrap();
    let mut names = Vec::new();
    for (i, b) in lua.iter().enumerate() {
        if is_job_script(&b.text) {
            let file = format!("scripts/doc_example_{i}.lua");
            p.write(&file, &b.text);
            let r = p.ferry(&["check", &file]);
            assert_eq!(
                r.code,
                0,
                "{}:{}: the job script does not load:\n{}\n{}",
                b.file,
                b.line,
                b.text,
                r.all()
            );
            std::fs::remove_file(p.at(&file)).unwrap();
        } else {
            let name = format!("{}:{}", b.file, b.line);
            std::fs::write(p.at(&format!("data/fragments/{i}.lua")), &b.text).unwrap();
            names.push((i, name));
        }
    }
    let list: Vec<String> = names
        .iter()
        .map(|(i, n)| format!("{{ {i}, {n:?} }}"))
        .collect();
    let file = p.root_script(
        "compile_fragments",
        &format!(
            r#"return {{ run = function(ctx)
  local data = ferry.store("data/fragments")
  local bad = {{}}
  for _, f in ipairs({{ {} }}) do
    local src = data:read(f[1] .. ".lua")
    local ok, err = load(src, "=" .. f[2], "t")
    if not ok then bad[#bad + 1] = err end
  end
  return bad
end }}"#,
            list.join(", ")
        ),
    );
    let r = p.run_file(&file);
    assert!(r.succeeded(), "{}", r.text());
    let bad = &r.record["summary"];
    assert!(
        bad.as_array().is_none_or(|a| a.is_empty())
            || bad.as_object().is_some_and(|o| o.is_empty()),
        "Lua examples that do not compile:\n{bad:#}"
    );
}

#[test]
fn the_block_parser_joins_continuations_and_drops_comments() {
    let c =
        commands("# a comment\nferry run x   # run it\ncurl -s \\\n  -d '{\"a\": \"#1\"}' u\n\n");
    assert_eq!(c, vec!["ferry run x", "curl -s -d '{\"a\": \"#1\"}' u"]);
}
