//! What a user does in the first hour on a server: `ferry init`, finding the project from a
//! subfolder (or `FERRY_ROOT`, `--config`), refusing to work outside any project, completions
//! and the man page, distinct exit codes, JSON logs, and the systemd unit: the daemon's
//! readiness, watchdog and stopping notifications on a real notify socket, and
//! `systemd-analyze verify` of `contrib/ferry.service`.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Project, Run, bin};

fn ferry_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(dir)
        .env_remove("FERRY_LOG")
        .env_remove("FERRY_ROOT")
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_SERVER");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ferry").into()
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_makes_a_project_that_runs_from_any_subfolder() {
    let tmp = tempfile::tempdir().unwrap();
    let r = ferry_in(tmp.path(), &["init", "proj"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let root = tmp.path().join("proj");
    for f in [
        "ferry.toml",
        ".luarc.json",
        ".gitignore",
        "scripts/hello.lua",
        "plugins/export.lua",
        "plugins/backup.lua",
    ] {
        assert!(root.join(f).is_file(), "{f} missing: {:?}", tree(&root));
    }
    let luarc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(".luarc.json")).unwrap()).unwrap();
    assert_eq!(luarc["runtime.version"], "Lua 5.4");
    // Editors get ferry's API: the shipped annotations, and .luarc.json points at them.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("lua/types/ferry.lua"))
            .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join(".ferry/types/ferry.lua")).unwrap(),
        shipped
    );
    let library = luarc["workspace.library"].as_array().unwrap();
    assert!(library.iter().any(|l| l == ".ferry/types"), "{luarc}");
    assert!(library.iter().any(|l| l == "plugins"), "{luarc}");
    // The commented config is valid as it stands.
    let r = ferry_in(&root, &["check"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    // From a subfolder, the project is found upwards; nothing is created where we stand.
    let sub = root.join("scripts");
    let r = ferry_in(&sub, &["run", "hello", "-p", "name=Ada", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"]["greeted"], "Ada");
    assert!(root.join("data/ferry.db").is_file());
    assert!(!sub.join("data").exists(), "{:?}", tree(&sub));
    // A second init refuses and changes nothing.
    let before = std::fs::read_to_string(root.join("ferry.toml")).unwrap();
    let r = ferry_in(tmp.path(), &["init", "proj"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("exists already"), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(root.join("ferry.toml")).unwrap(),
        before
    );
}

#[test]
fn new_gives_editor_support_once_and_refreshes_only_ferrys_own_types() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("lua/types/ferry.lua"))
            .unwrap();
    // A project without .luarc.json gets it, with the types it points at.
    let p = Project::new();
    let r = ferry_in(p.path(), &["new", "first"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("created .ferry/types/ferry.lua"),
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("created .luarc.json"), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(p.at(".ferry/types/ferry.lua")).unwrap(),
        shipped
    );
    // An older copy of ferry's types is refreshed; the user's .luarc.json is kept.
    p.write(
        ".ferry/types/ferry.lua",
        "---@meta ferry\n-- from an older ferry\n",
    );
    p.write(".luarc.json", "{\"mine\": true}\n");
    let r = ferry_in(p.path(), &["new", "second"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("refreshed .ferry/types/ferry.lua"),
        "{}",
        r.all()
    );
    assert_eq!(
        std::fs::read_to_string(p.at(".ferry/types/ferry.lua")).unwrap(),
        shipped
    );
    assert_eq!(
        std::fs::read_to_string(p.at(".luarc.json")).unwrap(),
        "{\"mine\": true}\n"
    );
    // A types file that is not ferry's is never touched.
    p.write(".ferry/types/ferry.lua", "-- my own notes\n");
    let r = ferry_in(p.path(), &["new", "third"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(p.at(".ferry/types/ferry.lua")).unwrap(),
        "-- my own notes\n"
    );
    // A project with its own editor set-up (a .luarc.json, no ferry types) is left as it is.
    let q = Project::new();
    q.write(".luarc.json", "{}\n");
    let r = ferry_in(q.path(), &["new", "job"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!q.at(".ferry").exists(), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(q.at(".luarc.json")).unwrap(),
        "{}\n"
    );
}

#[test]
fn outside_a_project_commands_say_so_and_create_nothing() {
    let p = Project::new();
    p.script("hello", "return { run = function(ctx) return 'hi' end }");
    let elsewhere = tempfile::tempdir().unwrap();
    let r = ferry_in(elsewhere.path(), &["run", "hello"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("not inside a ferry project"),
        "{}",
        r.all()
    );
    assert!(r.stderr.contains("ferry init"), "{}", r.all());
    assert!(
        tree(elsewhere.path()).is_empty(),
        "{:?}",
        tree(elsewhere.path())
    );
    // FERRY_ROOT and --root name the project from anywhere.
    let root = p.path().to_str().unwrap();
    let r = ferry_in(
        elsewhere.path(),
        &["run", "hello", "--json"],
        &[("FERRY_ROOT", root)],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let r = ferry_in(
        elsewhere.path(),
        &["--root", root, "runs", "list", "--json"],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    // FERRY_CONFIG: the config's folder is the root.
    p.write("ferry.toml", "[limits]\ntimeout = \"5m\"\n");
    let cfg = p.at("ferry.toml");
    let r = ferry_in(
        elsewhere.path(),
        &["runs", "list", "--json"],
        &[("FERRY_CONFIG", cfg.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    // A root that does not exist, a config that does not exist.
    let r = ferry_in(
        elsewhere.path(),
        &["--root", "/nonexistent/x", "check"],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("/nonexistent/x is not a folder"),
        "{}",
        r.all()
    );
    let r = ferry_in(elsewhere.path(), &["--config", "nope.toml", "check"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("nope.toml"), "{}", r.all());
    assert!(
        tree(elsewhere.path()).is_empty(),
        "{:?}",
        tree(elsewhere.path())
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let tmp = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ferry"),
        ("fish", "complete -c ferry"),
    ] {
        let r = ferry_in(tmp.path(), &["completions", shell], &[]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(
            r.stdout.contains(marker),
            "{shell}: {}",
            &r.stdout[..r.stdout.len().min(300)]
        );
        assert!(
            r.stdout.contains("serve") && r.stdout.contains("trigger"),
            "{shell}"
        );
    }
    let r = ferry_in(tmp.path(), &["completions", "tcsh"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let r = ferry_in(tmp.path(), &["man"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(".TH ferry"),
        "{}",
        &r.stdout[..r.stdout.len().min(300)]
    );
    assert!(r.stdout.contains("serve"));
    assert!(tree(tmp.path()).is_empty());
}

#[test]
fn exit_codes_tell_failure_usage_unreachable_apart() {
    let p = Project::new();
    p.script("bad", "return { run = function(ctx) error('boom') end }");
    p.script("ok", "return { run = function(ctx) return 1 end }");
    assert_eq!(p.ferry(&["run", "ok"]).code, 0);
    assert_eq!(p.ferry(&["run", "bad"]).code, 1);
    assert_eq!(p.ferry(&["run", "nosuchjob"]).code, 2);
    assert_eq!(p.ferry(&["frobnicate"]).code, 2);
    // --server where it would do nothing is not offered in the help, and refused, not ignored.
    let r = p.ferry(&["run", "--help"]);
    assert!(!r.stdout.contains("--server"), "{}", r.stdout);
    assert!(
        p.ferry(&["trigger", "--help"])
            .stdout
            .contains("--server URL")
    );
    let r = p.ferry(&["--server", "http://127.0.0.1:1", "run", "ok"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("applies to `trigger`, `runs` and `jobs` only"),
        "{}",
        r.all()
    );
    p.write("ferry.toml", "[limits]\ntimeout = \"forever\"\n");
    let r = p.ferry(&["check"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("limits.timeout"), "{}", r.all());
    std::fs::remove_file(p.at("ferry.toml")).unwrap();
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = p.ferry(&[
        "--server",
        &format!("http://127.0.0.1:{port}"),
        "runs",
        "list",
    ]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("cannot reach the ferry daemon"),
        "{}",
        r.all()
    );
}

#[test]
fn the_daemon_notifies_systemd_and_logs_json_when_asked() {
    let mut p = Project::new();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    p.set_env("NOTIFY_SOCKET", sock_path.to_str().unwrap());
    p.set_env("WATCHDOG_USEC", "400000");
    p.set_env("FERRY_LOG_FORMAT", "json");
    let d = Daemon::start(&p);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2) {
        let n = sock.recv(&mut buf).expect("a notification within 60 s");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(
        seen.contains("STATUS=serving; API on http://127.0.0.1:"),
        "{seen}"
    );
    // Every log line is one JSON object.
    let log = d.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(log.contains("systemd watchdog on"), "{log}");
    assert_eq!(d.stop(), Some(0));
    let mut rest = String::new();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        if rest.contains("STOPPING=1") {
            break;
        }
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/ferry.service"),
    )
    .unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    // Verified as installed: the binary at its ExecStart path (here, the one under test).
    let dir = tempfile::tempdir().unwrap();
    let unit = unit.replace("/usr/local/bin/ferry", bin());
    let path = dir.path().join("ferry.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian package systemd; tests/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only complaints about this unit count (the container's own units may warn).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ferry.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{text}");
}

#[test]
fn commands_that_print_data_print_json_when_asked() {
    let p = Project::new();
    p.script(
        "ok",
        "return { schedule = '0 2 * * *', run = function(ctx) return 1 end }",
    );
    p.script(
        "broken",
        "return { timeout = 'soon', run = function(ctx) end }",
    );
    let r = p.ferry(&["check", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let v = r.json();
    assert_eq!(v["checked"], 2);
    assert_eq!(v["failed"], 1);
    let scripts = v["scripts"].as_array().unwrap();
    let broken = scripts.iter().find(|s| s["ok"] == false).unwrap();
    assert_eq!(broken["file"], "scripts/broken.lua");
    assert!(
        broken["problems"][0].as_str().unwrap().contains("timeout"),
        "{v}"
    );
    let ok = scripts.iter().find(|s| s["ok"] == true).unwrap();
    assert_eq!(ok["job"], "ok");
    let r = p.ferry(&["trigger", "ok", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["state"], "queued");
    assert!(r.json()["id"].as_i64().unwrap() > 0);
    let r = p.ferry(&["trigger", "ok", "--json", "--wait"]);
    assert_eq!(r.code, 2, "{}", r.all());
    // A run, its lines, run again, cancelled (the queued rerun), deleted.
    p.script(
        "talk",
        "return { run = function(ctx) ctx.log.info('one') ctx.log.warn('two') end }",
    );
    let r = p.ferry(&["run", "talk", "--json"]);
    let id = r.json()["id"].as_i64().unwrap().to_string();
    let r = p.ferry(&["runs", "logs", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert_eq!(lines[1]["level"], "warn");
    assert_eq!(lines[1]["message"], "two");
    let r = p.ferry(&["runs", "rerun", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["of"].as_i64().unwrap().to_string(), id);
    let again = r.json()["id"].as_i64().unwrap().to_string();
    let r = p.ferry(&["runs", "cancel", &again, "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()[0]["ok"], true);
    let r = p.ferry(&["runs", "delete", &id, "999999", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(r.json()[0]["ok"], true);
    assert_eq!(r.json()[1]["ok"], false);
}
