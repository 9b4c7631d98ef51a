//! The sandbox and hostile input, through the real binary (issue #14).
//!
//! [`ESCAPES`] lists every escape a job script tries from inside a run; each must be refused
//! with the error given, and none may have an effect outside the run: no file read, created or
//! changed outside the allowed roots, no row of the history touched, no secret in any output.
//! The other tests cover what cannot run in one batch: limits a script tries to catch its way
//! past, job specs that name folders outside the roots, extreme numbers in job specs, scripts
//! that loop or crash while they load (`ferry check`, `ferry run` and the daemon, which must go
//! on serving its other jobs).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Daemon, Project, Run, wait_for};
use serde_json::Value;

const LIMITS: &str = "[limits]\nkill_grace = \"1s\"\n";

/// A Lua 5.4 binary chunk header: `load` must refuse it whatever the mode asked for.
const BYTECODE: &str =
    r#""\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86\0\0\0\0\0\0\0\0\0\0\0\40\119\64\1""#;

/// Every escape tried inside one run: name, the Lua body (with `R` the project root, `db` an
/// allowed database `data/app.db`, `ctx` the job context) and a part of the error it must end
/// with.
#[rustfmt::skip]
const ESCAPES: &[(&str, &str, &str)] = &[
    // The standard library: what is gone stays gone.
    ("io_library", r#"return io.open(R .. "/outside/secret.txt"):read("a")"#, "global 'io'"),
    ("debug_library", r#"return debug.getregistry()"#, "global 'debug'"),
    ("os_execute", r#"return os.execute("touch " .. R .. "/outside/pwned")"#, "field 'execute'"),
    ("os_getenv", r#"return os.getenv("HOME")"#, "field 'getenv'"),
    ("os_remove", r#"return os.remove(R .. "/outside/secret.txt")"#, "field 'remove'"),
    ("os_exit", r#"os.exit(3)"#, "field 'exit'"),
    ("package_loadlib", r#"return package.loadlib("libc.so.6", "system")"#, "global 'package'"),
    ("dofile", r#"return dofile(R .. "/outside/evil.lua")"#, "global 'dofile'"),
    ("loadfile", r#"return loadfile(R .. "/outside/evil.lua")"#, "global 'loadfile'"),
    ("string_dump", r#"return string.dump(function() end)"#, "field 'dump'"),
    ("binary_chunk", r#"return assert(load(BYTECODE))()"#, "binary"),
    ("binary_chunk_mode_b", r#"return assert(load(BYTECODE, "x", "b"))()"#, "binary"),
    ("load_with_globals", r#"return assert(load("return io or debug or package or os.execute", "x", "t", _G)(), "nothing reachable")"#, "nothing reachable"),
    ("env_rebinding", r#"local _ENV = setmetatable({}, { __index = _G }); return assert(io or debug or dofile, "nothing through a new _ENV")"#, "nothing through a new _ENV"),
    ("rawget_globals", r#"return assert(rawget(_G, "io") or rawget(_G, "debug") or rawget(_G, "package") or rawget(_G, "loadfile"), "nothing hidden in _G")"#, "nothing hidden in _G"),
    ("string_metatable", r#"local mt = getmetatable(""); assert(mt.__index == string); return assert(mt.__index.dump, "no dump through the string metatable")"#, "no dump through the string metatable"),
    ("gc_stop", r#"collectgarbage("stop")"#, "is not allowed in ferry scripts"),
    ("gc_generational", r#"collectgarbage("generational")"#, "is not allowed in ferry scripts"),
    ("gc_setpause", r#"collectgarbage("setpause", 1000)"#, "is not allowed in ferry scripts"),
    ("string_rep_beyond_lua", r#"return #string.rep("x", 1 << 40)"#, "resulting string too large"),
    ("string_format_width", r#"return string.format("%099999d", 1)"#, "invalid conversion"),
    ("string_format_tostring", r#"return string.format("%s", setmetatable({}, { __tostring = function() return io end }))"#, "__tostring"),
    // require: only modules under plugins/.
    ("require_parent", r#"return require("../outside/evil")"#, "is not allowed"),
    ("require_absolute", r#"return require(R .. "/outside/evil")"#, "is not allowed"),
    ("require_dotted_parent", r#"return require("..outside.evil")"#, "is not allowed"),
    ("require_symlink", r#"return require("linked")"#, "leads outside plugins/"),
    // Stores: only under the allowed roots, never ferry's own files.
    ("store_parent", r#"return ferry.store("../outside"):read("secret.txt")"#, "`..` segments"),
    ("store_inner_parent", r#"return ferry.store("data/../outside"):read("secret.txt")"#, "`..` segments"),
    ("store_percent_encoded", r#"return ferry.store("data/%2e%2e/outside"):read("secret.txt")"#, "`..` segments"),
    ("store_percent_mixed", r#"return ferry.store("data/.%2E/outside"):read("secret.txt")"#, "`..` segments"),
    ("store_file_url", r#"return ferry.store("file://" .. R .. "/outside"):read("secret.txt")"#, "outside the allowed roots"),
    ("store_file_url_encoded", r#"return ferry.store("file://" .. R .. "/data/%2e%2e/outside"):read("secret.txt")"#, "`..` segments"),
    ("store_absolute", r#"return ferry.store(R .. "/outside"):read("secret.txt")"#, "outside the allowed roots"),
    ("store_etc", r#"return ferry.store("file:///etc"):read("passwd")"#, "outside the allowed roots"),
    ("store_symlink_inside", r#"return ferry.store("data"):read("link/secret.txt")"#, "outside the allowed roots"),
    ("store_symlink_root", r#"return ferry.store("data/link"):read("secret.txt")"#, "outside the allowed roots"),
    ("store_object_parent", r#"return ferry.store("data"):write("../outside/pwned", "x")"#, "`..` segments"),
    ("store_object_absolute", r#"return ferry.store("data"):write(R .. "/outside/pwned", "x")"#, "is absolute"),
    ("store_history", r#"return ferry.store("data"):read("ferry.db")"#, "belongs to ferry itself"),
    ("store_journal", r#"return ferry.store("data/.ferry/pending"):list("")"#, "belongs to ferry itself"),
    ("copy_out", r#"return ferry.copy(ferry.store("inbox"), "in.txt", ferry.store("../outside"), "pwned")"#, "`..` segments"),
    // SQLite: the path given to open, and every file a statement reaches.
    ("sqlite_history", r#"return ferry.sqlite.open("data/ferry.db")"#, "belongs to ferry itself"),
    ("sqlite_parent", r#"return ferry.sqlite.open("../outside/x.db")"#, "`..` segments"),
    ("sqlite_absolute", r#"return ferry.sqlite.open(R .. "/outside/x.db")"#, "outside the allowed roots"),
    ("sqlite_symlink", r#"return ferry.sqlite.open("data/link/x.db")"#, "outside the allowed roots"),
    ("attach_history", r#"db:exec("ATTACH 'data/ferry.db' AS h"); for r in db:query("SELECT params FROM h.runs"):rows() do return r.params end"#, "belongs to ferry itself"),
    ("attach_history_absolute", r#"db:exec("ATTACH '" .. R .. "/data/ferry.db' AS h")"#, "belongs to ferry itself"),
    ("attach_outside", r#"db:exec("ATTACH '" .. R .. "/outside/x.db' AS o")"#, "outside the allowed roots"),
    ("attach_into_scripts", r#"db:exec("ATTACH 'scripts/pwned.lua' AS o")"#, "outside the allowed roots"),
    ("attach_symlink", r#"db:exec("ATTACH 'data/link/x.db' AS o")"#, "outside the allowed roots"),
    ("attach_uri", r#"db:exec("ATTACH 'file:data/ferry.db?mode=ro' AS h")"#, "URI file names"),
    ("attach_expression", r#"db:exec("ATTACH 'data/' || 'ferry.db' AS h")"#, "string literal"),
    ("attach_parameter", r#"db:exec("ATTACH ? AS h", { "data/ferry.db" })"#, "string literal"),
    ("vacuum_into_scripts", r#"db:exec("VACUUM INTO 'scripts/pwned.lua'")"#, "outside the allowed roots"),
    ("vacuum_into_outside", r#"db:exec("VACUUM INTO '" .. R .. "/outside/pwned.db'")"#, "outside the allowed roots"),
    ("load_extension", r#"for r in db:query("SELECT load_extension('/usr/lib/x.so') AS x"):rows() do end"#, "load_extension() is not available"),
    ("pragma_temp_store_directory", r#"db:exec("PRAGMA temp_store_directory = '" .. R .. "/outside'")"#, "temp_store_directory is not available"),
    ("sql_script_attach", r#"db:run("SELECT 1;\nATTACH 'data/ferry.db' AS h;\n")"#, "belongs to ferry itself"),
    ("snapshot_history", r#"ferry.sqlite.snapshot("data/ferry.db", "data/copy.db")"#, "belongs to ferry itself"),
    ("snapshot_into_scripts", r#"ferry.sqlite.snapshot("data/app.db", R .. "/scripts/pwned.lua")"#, "outside the allowed roots"),
    // Artifacts, archives, sockets.
    ("artifact_file_url", r#"ctx.artifact("file://" .. R .. "/outside", "secret.txt")"#, "outside the allowed roots"),
    ("artifact_parent", r#"ctx.artifact("data", "../outside/secret.txt")"#, "`..` segments"),
    ("zip_slip_read", r#"return ferry.zip.reader(ferry.store("data"):open("slip.zip")):entries()"#, "contains a `..` component"),
    ("zip_slip_write", r#"local z = ferry.zip.writer(ferry.store("data"):create("out.zip")); z:add("../../outside/pwned", "x")"#, "contains a `..` component"),
    ("zip_bomb", r#"local z = ferry.zip.writer(ferry.store("data"):create("bomb.zip")) z:add("zeros.bin", string.rep("\0", 8 * 1024 * 1024)); z:close() return ferry.zip.reader(ferry.store("data"):open("bomb.zip")):read("zeros.bin")"#, "entry \"zeros.bin\" inflates"),
    ("redis_unix_socket", r#"return ferry.redis.connect("redis+unix://" .. R .. "/outside/redis.sock")"#, "outside the allowed roots"),
];

/// Changes a script may make to its own VM: allowed, and gone in the next run.
const RUN_LOCAL: &str =
    r#"string.upper = nil; getmetatable("").__index.lower = nil; ferry = nil; require = nil"#;

/// Every file below `dir` (not following symlinks) with its content, skipping the folders
/// scripts may write to.
fn tree(dir: &Path, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, target.display().to_string().into_bytes());
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Runs `ferry ARGS`; fails the test (instead of hanging) if it does not end within `limit`.
fn ferry_within(p: &Project, args: &[&str], limit: Duration) -> Run {
    let mut child = p
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    let until = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap().into();
        }
        if Instant::now() > until {
            let _ = child.kill();
            let out: Run = child.wait_with_output().unwrap().into();
            panic!(
                "ferry {args:?} did not end within {limit:?}:\n{}",
                out.all()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A project with a folder outside the allowed roots holding a secret, links that lead there,
/// and a first run whose params hold a password.
fn hostile_project() -> Project {
    let p = Project::with_config(LIMITS);
    p.write("outside/secret.txt", "TOP-SECRET-0451");
    p.write("outside/evil.lua", "return 'escaped'");
    p.write("inbox/in.txt", "hello");
    std::os::unix::fs::symlink(p.at("outside"), p.at("data/link")).unwrap();
    std::os::unix::fs::symlink(p.at("outside/evil.lua"), p.at("plugins/linked.lua")).unwrap();
    // An archive whose entry climbs out of wherever it would be extracted.
    let mut slip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    slip.start_file(
        "../../outside/pwned",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    std::io::Write::write_all(&mut slip, b"pwned").unwrap();
    std::fs::write(p.at("data/slip.zip"), slip.finish().unwrap().into_inner()).unwrap();
    p.script(
        "victim",
        r#"return { params = { password = { type = "string" } }, run = function(ctx) return { ok = true } end }"#,
    );
    let r = p.ferry(&["run", "victim", "-p", "password=hunter2-secret"]);
    assert_eq!(r.code, 0, "{}", r.all());
    p
}

#[test]
fn every_escape_is_refused_and_leaves_nothing_outside_the_run() {
    let p = hostile_project();
    let root = p.path().display().to_string();
    let mut cases = String::new();
    for (name, body, _) in ESCAPES {
        cases.push_str(&format!("  try({name:?}, function()\n    {body}\n  end)\n"));
    }
    p.script(
        "escapes",
        &format!(
            r#"return {{ params = {{ root = {{ type = "string", required = true }} }}, run = function(ctx)
  local R = ctx.params.root
  local BYTECODE = {BYTECODE}
  local db = ferry.sqlite.open("data/app.db")
  db:exec("CREATE TABLE IF NOT EXISTS t (x)")
  local results = {{}}
  local function try(name, f)
    local ok, v = pcall(f)
    local kind = (type(v) == "userdata" or type(v) == "table") and v.kind or nil
    results[name] = {{ ok = ok, message = tostring(v), kind = kind }}
  end
{cases}  try("run_local_changes", function() {RUN_LOCAL} end)
  return results
end }}"#
        ),
    );
    p.script(
        "after",
        r#"return { run = function(ctx)
  return { upper = ("a"):upper(), lower = ("A"):lower(), ferry = ferry ~= nil and ferry.store ~= nil,
           require = require ~= nil, gc = collectgarbage("isrunning") }
end }"#,
    );
    let skip = ["data", "inbox"];
    let before = tree(p.path(), &skip);
    let victim_before = p.history(1);

    let r = p.ferry(&["run", "escapes", "--json", "-p", &format!("root={root}")]);
    assert_eq!(r.code, 0, "{}", r.all());
    let run = r.json();
    let results = &run["summary"];
    let mut failures = Vec::new();
    for (name, _, want) in ESCAPES {
        let got = &results[*name];
        let message = got["message"].as_str().unwrap_or("");
        if got["ok"] != Value::Bool(false) || !message.contains(want) {
            failures.push(format!("{name}: want an error with {want:?}, got {got}"));
        }
        // What the confinement or the SQLite authorizer refuses reaches scripts as `denied`.
        let denied = want.contains("outside the allowed roots")
            || want.contains("belongs to ferry itself")
            || ["attach_", "vacuum_", "load_extension", "pragma_", "sqlite_"]
                .iter()
                .any(|p| name.starts_with(p));
        if denied && got["kind"] != "denied" {
            failures.push(format!("{name}: want kind `denied`, got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "escapes not refused as expected:\n{}",
        failures.join("\n")
    );
    assert!(ESCAPES.len() >= 60, "{}", ESCAPES.len());
    assert_eq!(
        results["run_local_changes"]["ok"],
        Value::Bool(true),
        "{results}"
    );

    // Changes a run makes to its own VM do not reach the next run.
    let r = p.ferry(&["run", "after", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.json()["summary"],
        serde_json::json!({"upper": "A", "lower": "a", "ferry": true, "require": true, "gc": true})
    );

    // Nothing outside the allowed roots was created, changed or removed (scripts/, plugins/,
    // outside/, the links), and the history of the earlier run is untouched.
    assert_eq!(tree(p.path(), &skip), before);
    assert_eq!(p.history(1), victim_before);
    assert_eq!(
        p.runs().len(),
        3,
        "only the three runs started here are recorded"
    );
    assert!(!p.at("data/link/pwned").exists() && !p.at("scripts/pwned.lua").exists());
    // No secret reached any output or record.
    let everything = format!("{}\n{}\n{}", r.all(), run, p.history(2));
    for secret in ["hunter2-secret", "TOP-SECRET-0451"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn limits_hold_against_scripts_that_try_to_escape_them() {
    let p = hostile_project();
    // Each case: the body of `run` and the error code its run must end with.
    let cases = [
        (
            "pcall_loop",
            "while true do pcall(function() while true do end end) end",
            "timeout",
        ),
        (
            "coroutine_loop",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
            "timeout",
        ),
        (
            "error_handler_loop",
            "xpcall(function() error('x') end, function() while true do end end)",
            "timeout",
        ),
        (
            // A finalizer runs with hooks off: only the watchdog can stop it.
            "gc_finalizer_loop",
            "setmetatable({}, { __gc = function() while true do end end }); collectgarbage()",
            "timeout",
        ),
        (
            "string_rep_huge",
            "return #string.rep('x', 1 << 30)",
            "memory",
        ),
        (
            "caught_memory",
            "while true do pcall(string.rep, 'x', 1 << 30) end",
            "memory",
        ),
    ];
    for (name, body, _) in cases {
        p.script(
            name,
            &format!("return {{ timeout = \"1s\", memory = \"64MiB\", run = function(ctx)\n{body}\nend }}"),
        );
    }
    p.script(
        "after",
        "return { run = function() return { ok = ('x'):rep(3) } end }",
    );
    let before = tree(p.path(), &["data", "inbox"]);
    for (name, _, code) in cases {
        let r = ferry_within(&p, &["run", name, "--json"], Duration::from_secs(60));
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        let state = if code == "timeout" {
            "timed_out"
        } else {
            "failed"
        };
        assert_eq!(r.json()["state"], state, "{name}: {}", r.all());
        assert_eq!(r.json()["error"]["code"], code, "{name}: {}", r.all());
        // The next run starts in a fresh worker and VM, unharmed.
        let r = p.ferry(&["run", "after", "--json"]);
        assert_eq!(
            r.json()["summary"]["ok"],
            "xxx",
            "after {name}: {}",
            r.all()
        );
    }
    assert_eq!(tree(p.path(), &["data", "inbox"]), before);
}

#[test]
fn job_specs_cannot_name_folders_outside_the_allowed_roots() {
    let p = hostile_project();
    let root = p.path().display();
    std::os::unix::fs::symlink(p.at("outside"), p.at("inbox/out")).unwrap();
    // Each case: the `watch` value and the key the error must name.
    let cases = [
        (
            "watch_parent",
            r#""../outside/*.csv""#.to_string(),
            "watch",
            "`..` segments",
        ),
        (
            "watch_table_parent",
            r#"{ path = "inbox/../outside" }"#.into(),
            "watch.path",
            "`..` segments",
        ),
        (
            "watch_percent",
            r#""inbox/%2e%2e/outside""#.into(),
            "watch",
            "`..` segments",
        ),
        (
            "watch_absolute",
            format!(r#"{{ path = "{root}/outside" }}"#),
            "watch.path",
            "outside the allowed roots",
        ),
        (
            "watch_etc",
            r#""/etc""#.into(),
            "watch",
            "outside the allowed roots",
        ),
        (
            "watch_symlink",
            r#""inbox/out/*.csv""#.into(),
            "watch",
            "outside the allowed roots",
        ),
        (
            "watch_history_folder",
            r#""data/*.db""#.into(),
            "watch",
            "holds ferry's own files",
        ),
        (
            "watch_scripts",
            r#""scripts/*.lua""#.into(),
            "watch",
            "outside the allowed roots",
        ),
    ];
    let mut files = Vec::new();
    for (name, watch, _, _) in &cases {
        p.script(
            name,
            &format!("return {{ watch = {watch}, run = function() end }}"),
        );
        files.push(format!("scripts/{name}.lua"));
    }
    p.script(
        "fine",
        r#"return { watch = "inbox/orders/*.csv", run = function() end }"#,
    );
    files.push("scripts/fine.lua".into());
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let r = p.ferry(&args);
    assert_eq!(r.code, 1, "{}", r.all());
    let roots = format!("{root}/data, {root}/inbox");
    for (name, _, key, want) in &cases {
        let line = r
            .stdout
            .lines()
            .find(|l| {
                l.contains(&format!("scripts/{name}.lua:")) && l.contains(&format!("key `{key}`:"))
            })
            .unwrap_or_else(|| panic!("{name}: no error naming `{key}`:\n{}", r.stdout));
        assert!(line.contains(want), "{name}: {line}");
        if !want.contains("ferry's own") {
            assert!(
                line.contains(&roots),
                "{name} names the allowed roots: {line}"
            );
        }
    }
    assert!(r.stdout.contains("ok    scripts/fine.lua"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!(
        "{} checked, {} failed",
        cases.len() + 1,
        cases.len()
    )));

    // The daemon does not load them either, and never touches the folders they name.
    let d = Daemon::start(&p);
    let jobs = p.ferry(&["jobs", "--json"]).json();
    for (name, _, _, _) in &cases {
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == *name)
            .unwrap_or_else(|| panic!("{name} listed: {jobs}"));
        assert_eq!(job["loaded"], false, "{job}");
    }
    assert_eq!(d.stop(), Some(0));
    assert!(!p.at("outside/.ferry").exists());
    assert!(!p.at("data/.ferry/processing").exists());
    assert_eq!(
        std::fs::read_to_string(p.at("outside/secret.txt")).unwrap(),
        "TOP-SECRET-0451"
    );
}

/// Every duration, size and count a job spec takes, with values no user should be able to
/// crash ferry with: each is refused with the key and the allowed range, in one `ferry check`.
#[test]
fn extreme_numbers_in_job_specs_are_refused_with_key_and_range() {
    let p = Project::with_config(LIMITS);
    // (key, how to place a value V in a spec, values that must be refused)
    let huge = [
        "5e99",
        "1e308",
        "math.maxinteger",
        "\"99999999999999999999d\"",
        "\"18446744073709551615d\"",
    ];
    let negative = ["-1", "math.mininteger", "-1e-300", "\"-5s\""];
    let specs: &[(&str, &str, &[&str])] = &[
        ("timeout", "timeout = V", &["0", "1e-300", "\"0s\""]),
        ("retry_delay", "retry_delay = V", &[]),
        ("retry_max_delay", "retry_max_delay = V", &["0", "\"0s\""]),
        (
            "memory",
            "memory = V",
            &["0", "1", "\"0\"", "1.5", "\"99999999999999999999999TiB\""],
        ),
        (
            "schedule.jitter",
            "schedule = { cron = \"@daily\", jitter = V }",
            &[],
        ),
        (
            "watch.settle",
            "watch = { path = \"inbox/x\", settle = V }",
            &[],
        ),
        (
            "watch.poll",
            "watch = { path = \"inbox/x\", poll = V }",
            &["0", "\"0s\"", "0.001"],
        ),
        ("retries", "retries = V", &["101", "0.5"]),
    ];
    let mut expected = Vec::new();
    for (key, template, extra) in specs {
        let finite = huge.iter().chain(&negative).chain(extra.iter());
        let values = finite
            .map(|v| (*v, "must be"))
            .chain(["0/0", "math.huge", "-math.huge"].map(|v| (v, "cannot be represented")));
        for (v, want) in values {
            let name = format!("n{}", expected.len());
            let spec = template.replace('V', v);
            p.script(&name, &format!("return {{ {spec}, run = function() end }}"));
            expected.push((name, *key, v, want));
        }
    }
    let r = ferry_within(&p, &["check"], Duration::from_secs(600));
    assert_eq!(r.code, 1, "{}", r.all());
    let top = specs
        .iter()
        .map(|(k, _, _)| k.split('.').next().unwrap())
        .collect::<Vec<_>>();
    for (name, key, value, want) in &expected {
        let file = format!("scripts/{name}.lua");
        let block: Vec<&str> = r
            .stdout
            .lines()
            .skip_while(|l| *l != format!("FAIL  {file}"))
            .skip(1)
            .take_while(|l| l.starts_with("      "))
            .collect();
        let text = block.join("\n");
        assert!(
            !block.is_empty(),
            "{key} = {value} was accepted:\n{}",
            r.stdout
        );
        // Non-finite numbers are refused when the spec is read (JSON has none), naming the
        // top-level key; the others by the key's range, or (text that is no duration or size
        // at all) by what was expected.
        let named = if *want == "must be" {
            text.contains(&format!("key `{key}`: "))
        } else {
            top.iter().any(|t| text.contains(&format!("key `{t}`")))
        };
        let said = text.contains(want)
            || (value.starts_with('"') && text.contains("expected a"))
            || (*key == "retries" && text.contains("expected a whole number from 0 to 100"));
        assert!(named && said, "{key} = {value}:\n{text}");
    }
    assert!(r.stdout.contains(&format!(
        "{} checked, {} failed",
        expected.len(),
        expected.len()
    )));
    assert!(!r.all().contains("panicked"), "{}", r.all());
}

/// Scripts that loop or crash while they load: `ferry check` and `ferry run` end with a clear
/// error, and the daemon goes on serving the good job next to them, its health endpoint
/// answering, also while it reloads another bad script.
#[test]
fn bad_scripts_never_hang_or_take_down_the_process_that_loads_them() {
    let p = Project::with_config(&format!(
        "{LIMITS}worker_headroom = \"256MiB\"\n[daemon]\nshutdown_grace = \"500ms\"\n"
    ));
    p.script(
        "tick",
        r#"return { schedule = "* * * * * *", run = function(ctx) return 1 end }"#,
    );
    // (name, source, what `ferry check` must say)
    let bad = [
        (
            "gc_loop",
            "setmetatable({}, { __gc = function() while true do end end })\ncollectgarbage()\nreturn { run = function() end }",
            "did not finish evaluating within 5.0s",
        ),
        (
            // These values made Rust panic (Duration::from_secs_f64) before #14.
            "panicked",
            r#"return { timeout = 5e99, retry_delay = 1e99, schedule = { cron = "* * * * * *", jitter = 1e300 },
                        watch = { path = "inbox/p", settle = 5e99 }, run = function() end }"#,
            "key `timeout`: must be from 1ms to 30d, got 5e99 seconds",
        ),
        (
            // Memory held by Rust beyond the address-space limit: the allocation fails and
            // the evaluating process dies.
            "crashes",
            r#"local m = ferry.store("memory://hog"); local s = string.rep("x", 8 * 1024 * 1024)
               for i = 1, 200 do m:write("k" .. i, s) end
               return { run = function() end }"#,
            "crashed the process that ran it",
        ),
        (
            "c_runaway",
            r#"string.find(("a"):rep(28), ("a*"):rep(28) .. "b")
               return { run = function() end }"#,
            "did not finish evaluating",
        ),
    ];
    for (name, source, want) in &bad {
        p.script(name, source);
        let r = ferry_within(
            &p,
            &["check", &format!("scripts/{name}.lua")],
            Duration::from_secs(120),
        );
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        assert!(
            r.stdout.contains(&format!("FAIL  scripts/{name}.lua")),
            "{name}: {}",
            r.all()
        );
        assert!(
            r.stdout.contains(want),
            "{name}: want {want:?}:\n{}",
            r.all()
        );
        let r = ferry_within(&p, &["run", name], Duration::from_secs(120));
        assert_eq!(r.code, 2, "{name}: {}", r.all());
        assert!(r.stderr.contains(want), "{name} via run: {}", r.all());
    }

    let d = Daemon::start(&p);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let health = || -> Value {
        let r = http.get(format!("{}/api/v1/health", d.url)).send().unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    assert_eq!(health()["jobs"], 1, "only tick loads");
    let ticks = |n: usize| {
        wait_for(&format!("{n} tick runs"), Duration::from_secs(60), || {
            let ok = p
                .runs_of("tick")
                .iter()
                .filter(|r| r["state"] == "succeeded")
                .count();
            (ok >= n).then_some(ok)
        })
    };
    let seen = ticks(2);
    let jobs = p.ferry(&["jobs", "--json"]).json();
    for (name, _, want) in &bad {
        let job = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == *name)
            .unwrap();
        assert!(job["error"].to_string().contains(want), "{name}: {job}");
    }
    // A new bad script while the daemon runs: the reload that meets it ends, health answers
    // all along, and the cron job goes on firing.
    p.script(
        "late_loop",
        "setmetatable({}, { __gc = function() while true do end end })\ncollectgarbage()\nreturn { run = function() end }",
    );
    wait_for("the reload of late_loop", Duration::from_secs(60), || {
        assert_eq!(health()["status"], "ok");
        d.log().contains("late_loop").then_some(())
    });
    ticks(seen + 2);
    assert_eq!(health()["jobs"], 1);
    assert_eq!(d.stop(), Some(0));
}

/// Bad input files fail with an error that names the file and the place: a duplicate key in
/// an import names the input file and its row; a changed byte in an RDB file is reported as a
/// corruption at the record, not as a cut file.
#[test]
fn input_failures_name_the_input_and_the_place() {
    let p = Project::with_shipped_files();
    std::fs::create_dir_all(p.at("data")).unwrap();
    p.write("data/in/dup.csv", "id,name\n1,a\n2,b\n1,c\n");
    p.script(
        "import_dup",
        r#"local import = require "import"
        return { run = function(ctx)
          ferry.sqlite.open("data/shop.db"):exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)")
          return import.run(ctx, { db = "data/shop.db", table = "t", file = "data/in/dup.csv",
            types = { id = "integer" } })
        end }"#,
    );
    let r = p.ferry(&["run", "import_dup", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("row 3 from data/in/dup.csv") && message.contains("UNIQUE"),
        "{message}"
    );

    // An RDB file with one string key, then the same file with the value's length byte
    // changed so that the value runs past the end.
    let mut rdb = b"REDIS0011".to_vec();
    rdb.extend_from_slice(&[0, 1, b'k', 10]);
    rdb.extend_from_slice(b"some value");
    rdb.push(0xFF);
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(&rdb);
    rdb.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(p.at("data/good.rdb"), &rdb).unwrap();
    rdb[12] = 0x3F;
    std::fs::write(p.at("data/bad.rdb"), &rdb).unwrap();
    std::fs::write(p.at("data/cut.rdb"), &rdb[..rdb.len() - 12]).unwrap();
    p.script(
        "rdb",
        r#"return { run = function(ctx)
          local out = {}
          for _, f in ipairs({ "good.rdb", "bad.rdb", "cut.rdb" }) do
            local ok, r = pcall(ferry.redis.check, ferry.store("data"):open(f))
            out[f] = ok and r.keys or tostring(r)
          end
          return out
        end }"#,
    );
    let r = p.ferry(&["run", "rdb", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = &r.json()["summary"];
    assert_eq!(s["good.rdb"], 1, "{s}");
    let bad = s["bad.rdb"].as_str().unwrap();
    assert!(
        bad.contains("bad.rdb: byte 9 (key \"k\"): corrupt data inside a string value")
            && bad.contains("checksum does not match"),
        "{bad}"
    );
    let cut = s["cut.rdb"].as_str().unwrap();
    assert!(cut.contains("unexpected end of file"), "{cut}");
}

/// Durations, sizes and counts scripts (and the plugins built on them) pass to the host API:
/// extreme values are clean errors naming the option, never a crash of the run.
#[test]
fn extreme_numbers_in_host_api_options_are_clean_errors() {
    let p = Project::with_config(LIMITS);
    // (what, Lua expression, part of the error)
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        ("redis connect_timeout huge", r#"ferry.redis.connect("redis://127.0.0.1:1", { connect_timeout = "99999999999999999999d" })"#, "option `connect_timeout`: must be from 1ms to 1h"),
        ("redis connect_timeout zero", r#"ferry.redis.connect("redis://127.0.0.1:1", { connect_timeout = "0s" })"#, "option `connect_timeout`: must be from 1ms to 1h"),
        ("redis timeout huge", r#"ferry.redis.connect("redis://127.0.0.1:1", { timeout = "18446744073709551615d" })"#, "option `timeout`: must be from 1ms to 1d"),
        ("redis db negative", r#"ferry.redis.connect("redis://127.0.0.1:1", { db = -1 })"#, "option `db`"),
        ("redis db huge", r#"ferry.redis.connect("redis://127.0.0.1:1", { db = math.huge })"#, "option `db`"),
        ("zip max_ratio zero", r#"ferry.zip.reader("", { max_ratio = 0 })"#, "option `max_ratio`"),
        ("zip max_size huge", r#"ferry.zip.reader("", { max_size = "99999999999999999999999TiB" })"#, "option `max_size`"),
        ("zip max_size negative", r#"ferry.zip.reader("", { max_size = -1 })"#, "option `max_size`"),
        ("zip max_entries NaN", r#"ferry.zip.reader("", { max_entries = 0/0 })"#, "option `max_entries`"),
        ("read huge", r#"ferry.store("data"):open("f.txt"):read(math.maxinteger)"#, "more than the run's memory limit"),
        ("read negative", r#"ferry.store("data"):open("f.txt"):read(math.mininteger)"#, "non-negative integer"),
        ("read NaN", r#"ferry.store("data"):open("f.txt"):read(0/0)"#, "non-negative integer"),
        ("progress NaN", r#"ctx.progress(0/0, math.huge)"#, "ctx.progress"),
        ("insert batch negative", r#"ferry.sqlite.open("data/x.db"):insert("t", ferry.csv.reader("a\n1\n"), { create = true, batch = -1 })"#, "option `batch`"),
    ];
    let mut body = String::new();
    for (what, expr, _) in cases {
        body.push_str(&format!(
            "  do local ok, e = pcall(function() return {expr} end); out[{what:?}] = ok and \"accepted\" or tostring(e) end\n"
        ));
    }
    p.write("data/f.txt", "hello");
    p.script(
        "extremes",
        &format!("return {{ run = function(ctx)\n  local out = {{}}\n{body}  return out\nend }}"),
    );
    let r = p.ferry(&["run", "extremes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let s = &r.json()["summary"];
    for (what, _, want) in cases {
        let got = s[*what].as_str().unwrap_or_default();
        assert!(got.contains(want), "{what}: want {want:?}, got {got:?}");
    }
}
