//! The host API against its annotations and its reference: every function a VM registers (under
//! `ferry`, in `ctx`, and as methods of the objects the host hands out) must be annotated in
//! `lua/types/ferry.lua` and documented in `docs/lua-api.md`, and neither may name a function that
//! does not exist.
//!
//! The registered names are collected from a real VM built the way a run builds it (the sandbox,
//! then `ctx`): tables are walked, and methods of userdata are read from their metatables'
//! `__index` tables (scripts cannot see these: mlua protects the metatables). A Redis server
//! (Debian's `redis-server`), a MariaDB server on a Unix socket (Debian's `mariadb-server`; both
//! installed by tests/setup.sh) and a one-shot HTTP server give the objects that need a peer.
//!
//! Error values (`err.kind`, ...) have fields and no methods, so they are not among the objects:
//! mlua's `__index` of a userdata with fields is a function that scripts and this test cannot
//! look into.
//!
//! Names are written as the docs write them: `ferry.http.get`, `ctx.log.info`, `ctx.state:get`,
//! and `Type:method` for objects (`Store:open`, `Db:query`, `HttpResponse:json`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mlua::{AnyUserData, Lua, Table, Value};

use super::{ArtifactRecord, Guard, Level, RunHost, RunInput, VmOptions};

const TYPES: &str = include_str!("../../lua/types/ferry.lua");
const DOCS: &str = include_str!("../../docs/lua-api.md");

/// Classes of the annotations whose functions the docs write with another prefix.
const CLASS_PREFIXES: &[(&str, &str)] = &[
    ("ferry.Context", "ctx"),
    ("ferry.Log", "ctx.log"),
    ("ferry.State", "ctx.state"),
];

struct NullHost;

impl RunHost for NullHost {
    fn log(&self, _: Level, _: &str) {}
    fn progress(&self, _: u64, _: Option<u64>) {}
    fn artifact(&self, _: &ArtifactRecord) -> Result<(), String> {
        Ok(())
    }
    fn state_get(&self, _: &str) -> Result<Option<serde_json::Value>, String> {
        Ok(None)
    }
    fn state_set(&self, _: &str, _: Option<&serde_json::Value>) -> Result<(), String> {
        Ok(())
    }
    fn secret(&self, _: &str) -> Option<String> {
        None
    }
}

/// A `redis-server` on a free port without persistence, killed when dropped.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (tests/setup.sh installs it)");
        let until = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A MariaDB server on a Unix socket in `dir` (initialised there by `mariadb-install-db`, no TCP),
/// killed when dropped.
struct Mariadb(Child);

impl Mariadb {
    fn start(dir: &std::path::Path) -> Mariadb {
        let datadir = format!("--datadir={}", dir.join("db").display());
        let out = Command::new("mariadb-install-db")
            .args(["--no-defaults", &datadir, "--user=root"])
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db (tests/setup.sh installs it)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sock = dir.join("sock");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                &datadir,
                "--user=root",
                "--skip-networking",
            ])
            .arg(format!("--socket={}", sock.display()))
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (tests/setup.sh installs it)");
        let until = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                Instant::now() < until,
                "mariadbd did not listen on {sock:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mariadb(child)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Answers one HTTP request with `{}` and returns the URL to ask.
fn one_shot_http() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    format!("http://127.0.0.1:{port}/")
}

/// The named function values of a table, recursively, as `prefix.name`.
fn walk(prefix: &str, t: &Table, out: &mut BTreeSet<String>, sep: &str) {
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.expect("table entry");
        let Value::String(k) = k else { continue };
        let name = format!("{prefix}{sep}{}", k.to_string_lossy());
        match v {
            Value::Function(_) => {
                out.insert(name);
            }
            Value::Table(sub) => walk(&name, &sub, out, "."),
            _ => {}
        }
    }
}

/// The methods of a userdata, from its metatable's `__index` table, as `prefix:name`.
fn methods(prefix: &str, ud: &AnyUserData, out: &mut BTreeSet<String>) {
    let meta = ud.metatable().expect("userdata metatable");
    match meta.get::<Value>("__index").expect("__index") {
        Value::Table(t) => {
            for pair in t.pairs::<String, Value>() {
                let (k, v) = pair.expect("method entry");
                if matches!(v, Value::Function(_)) {
                    out.insert(format!("{prefix}:{k}"));
                }
            }
        }
        Value::Nil => {}
        other => panic!(
            "{prefix}: __index is a {}; this test reads methods from an __index table only",
            other.type_name()
        ),
    }
}

/// Every function a run's VM registers, named as the docs name them.
fn registered() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("data")).expect("data folder");
    let input = RunInput {
        run_id: 1,
        job: "surface".into(),
        chunk_name: "surface.lua".into(),
        source: String::new(),
        params: serde_json::json!({}),
        trigger: serde_json::json!({"kind": "manual"}),
        vm: VmOptions {
            plugins_dir: root.join("plugins"),
            plugins_label: "plugins".into(),
            memory: 256 << 20,
            timeout: Duration::from_secs(600),
            storage: crate::storage::StorageConfig::new(root.clone(), vec![root.join("data")]),
            redis: Default::default(),
            databases: Default::default(),
            http: Default::default(),
        },
        cancel: Arc::new(AtomicBool::new(false)),
        temp_dir: Some(root.join("data/tmp")),
    };
    let guard = Guard::new(input.vm.timeout, input.vm.memory, input.cancel.clone());
    let host: Arc<dyn RunHost> = Arc::new(NullHost);
    let lua: Lua = super::sandbox::new_vm(&input.vm, &guard, Some(host.clone())).expect("VM");
    let ctx = super::context::build(&lua, &input, host, &guard).expect("ctx");

    let mut names = BTreeSet::new();
    walk(
        "ferry",
        &lua.globals().get("ferry").expect("ferry"),
        &mut names,
        ".",
    );
    walk("ctx", &ctx, &mut names, ".");

    let redis = Redis::start();
    let mysql_dir = root.join("data/m");
    std::fs::create_dir_all(&mysql_dir).expect("mariadb folder");
    let _mariadb = Mariadb::start(&mysql_dir);
    let script = r#"
        local ctx, db_path, redis_url, http_url, mysql_url = ...
        local mem = ferry.store("memory://surface")
        mem:write("a.csv", "a\n1\n")
        local zw = ferry.zip.writer(mem:create("z.zip"))
        local objects = {
          Store = mem,
          Reader = mem:open("a.csv"),
          Writer = mem:create("w.txt"),
          ZipWriter = zw,
          ZipEntryWriter = zw:create("e.txt"),
          RowSource = ferry.csv.reader("a\n1\n"),
          RowSink = ferry.csv.writer(mem:create("s.csv")),
          Db = ferry.sqlite.open(db_path),
          Schema = ferry.schema("surface", {}),
          SqlScript = ferry.sql.reader("SELECT 1;"),
          Redis = ferry.redis.connect(redis_url),
          MysqlDb = ferry.mysql.connect(mysql_url),
          ["ctx.state"] = ctx.state,
        }
        zw:close()
        objects.ZipReader = ferry.zip.reader(mem:open("z.zip"))
        return objects, ferry.http.get(http_url)
    "#;
    let (objects, response): (Table, Table) = lua
        .load(script)
        .set_name("=surface")
        .call((
            ctx,
            root.join("data/surface.db").display().to_string(),
            format!("redis://127.0.0.1:{}/0", redis.1),
            one_shot_http(),
            format!(
                "mysql://root@localhost/?socket={}",
                mysql_dir.join("sock").display()
            ),
        ))
        .expect("the objects of the host API");
    for pair in objects.pairs::<String, AnyUserData>() {
        let (name, ud) = pair.expect("an object");
        methods(&name, &ud, &mut names);
    }
    walk("HttpResponse", &response, &mut names, ":");
    names
}

/// The functions `lua/types/ferry.lua` declares (`function ferry.http.get(`, `function Store:open(`),
/// with the local table of each class (`---@class ferry.Store` then `local Store = {}`) replaced
/// by the class's name in the docs.
fn annotated() -> BTreeSet<String> {
    let local = regex::Regex::new(r"^local (\w+) = \{\}").expect("regex");
    let class = regex::Regex::new(r"^---@class ([\w.]+)").expect("regex");
    let function = regex::Regex::new(r"^function (\w+)([\w.:]*)\(").expect("regex");
    let mut locals = std::collections::BTreeMap::new();
    let mut last_class: Option<String> = None;
    let mut out = BTreeSet::new();
    for line in TYPES.lines() {
        if let Some(c) = class.captures(line) {
            last_class = Some(c[1].to_string());
        } else if let Some(c) = local.captures(line) {
            let class = last_class
                .clone()
                .expect("a `local X = {}` right after its ---@class");
            let prefix = CLASS_PREFIXES
                .iter()
                .find(|(k, _)| *k == class)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| class.trim_start_matches("ferry.").to_string());
            locals.insert(c[1].to_string(), prefix);
        } else if let Some(c) = function.captures(line) {
            let head = locals
                .get(&c[1])
                .cloned()
                .unwrap_or_else(|| c[1].to_string());
            out.insert(format!("{head}{}", &c[2]));
        } else if !line.starts_with("---") {
            last_class = None;
        }
    }
    out
}

/// Names written as calls in `docs/lua-api.md`: `ferry.a.b(`, `ctx.a(`, `ctx.state:get(` and
/// `Type:method(` (capitalised type names, as the index writes them), inside inline code spans
/// (`documented`), and `ferry.`/`ctx.` calls in fenced examples too (`mentioned`).
fn documented() -> (BTreeSet<String>, BTreeSet<String>) {
    let call = regex::Regex::new(
        r"(?:^|[^\w.:])((?:ferry|ctx)(?:\.\w+)+(?::\w+)?|[A-Z][a-z][A-Za-z]*:\w+)\(",
    )
    .expect("regex");
    let span = regex::Regex::new(r"`([^`\n]+)`").expect("regex");
    let (mut spans, mut fenced) = (BTreeSet::new(), BTreeSet::new());
    let mut in_fence = false;
    for line in DOCS.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            for c in call.captures_iter(line) {
                fenced.insert(c[1].to_string());
            }
            continue;
        }
        for s in span.captures_iter(line) {
            for c in call.captures_iter(&s[1]) {
                spans.insert(c[1].to_string());
            }
        }
    }
    let mentioned = spans.union(&fenced).cloned().collect();
    (spans, mentioned)
}

fn listed(names: &BTreeSet<&String>) -> String {
    names.iter().map(|n| format!("\n  {n}")).collect()
}

#[test]
fn every_host_function_is_annotated_and_documented_and_nothing_else_is() {
    let host = registered();
    let types = annotated();
    let (docs, mentioned) = documented();
    let mut problems = String::new();
    let mut report = |what: &str, names: BTreeSet<&String>| {
        if !names.is_empty() {
            problems.push_str(&format!("\n{what}:{}", listed(&names)));
        }
    };
    report(
        "registered by the host but not annotated in lua/types/ferry.lua",
        host.difference(&types).collect(),
    );
    report(
        "annotated in lua/types/ferry.lua but not registered by the host",
        types.difference(&host).collect(),
    );
    report(
        "registered by the host but not documented in docs/lua-api.md (as `name(` in an inline code span)",
        host.difference(&docs).collect(),
    );
    report(
        "called in docs/lua-api.md but not registered by the host",
        mentioned.difference(&host).collect(),
    );
    assert!(
        problems.is_empty(),
        "the host API and its descriptions disagree:{problems}"
    );
    // Sanity: the collection itself worked.
    for name in [
        "ferry.http.get",
        "ctx.log.info",
        "ctx.state:get",
        "Store:open",
        "Redis:scan",
    ] {
        assert!(host.contains(name), "{name} not found among {host:?}");
    }
}

#[test]
fn the_annotation_parser_maps_classes_to_the_docs_names() {
    let types = annotated();
    for name in [
        "ferry.store",
        "ctx.progress",
        "ctx.log.warn",
        "ctx.state:set",
        "Db:insert",
    ] {
        assert!(types.contains(name), "{name} missing from {types:?}");
    }
}
