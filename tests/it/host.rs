//! The Lua job host through the real binary: `ferry run`, `check`, `runs`, the sandbox, limits,
//! the job context and the history.

use crate::common;

use std::time::Duration;

use common::{Project, SIGINT, signal, wait_for};
use serde_json::json;

const LIMITS: &str = "[limits]\nkill_grace = \"1s\"\n";

#[test]
fn success_with_typed_params_and_history() {
    let p = Project::new();
    p.script(
        "greet",
        r#"return {
          params = {
            name = { type = "string", required = true },
            n = { type = "integer", default = 2 },
            ratio = { type = "number" },
            loud = { type = "boolean", default = false },
          },
          run = function(ctx)
            print("printed", 1, true)
            ctx.log.warn("n is %d (%s)", ctx.params.n, math.type(ctx.params.n))
            ctx.progress(1, 4)
            return { name = ctx.params.name, n = ctx.params.n, ratio = ctx.params.ratio,
                     loud = ctx.params.loud, trigger = ctx.trigger.kind, job = ctx.job, id = ctx.run_id }
          end }"#,
    );
    let r = p.ferry(&[
        "run",
        "greet",
        "-p",
        "name=Ada",
        "-p",
        "n=5",
        "-p",
        "ratio=0.5",
        "-p",
        "loud=yes",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains("printed\t1\ttrue"),
        "live log: {}",
        r.stdout
    );
    let run = p.show(1);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(
        run["params"],
        json!({"name": "Ada", "n": 5, "ratio": 0.5, "loud": true})
    );
    assert_eq!(
        run["summary"],
        json!({"name": "Ada", "n": 5, "ratio": 0.5, "loud": true, "trigger": "manual", "job": "greet", "id": 1})
    );
    assert_eq!(run["trigger"], json!({"kind": "manual"}));
    assert_eq!(run["progress"], json!({"done": 1, "total": 4}));
    let logs: Vec<_> = run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["level"].clone(), l["message"].clone()))
        .collect();
    assert_eq!(logs[0], (json!("info"), json!("printed\t1\ttrue")));
    assert_eq!(logs[1], (json!("warn"), json!("n is 5 (integer)")));
    for key in [
        "id",
        "job",
        "state",
        "trigger",
        "params",
        "queued_at",
        "started_at",
        "finished_at",
        "error",
        "summary",
        "progress",
    ] {
        assert!(run.get(key).is_some(), "stable field {key} in {run}");
    }

    // Params are refused before a run starts, naming the param.
    for (args, want) in [
        (
            vec!["-p", "name=x", "-p", "n=five"],
            "param `n`: expected integer",
        ),
        (
            vec!["-p", "name=x", "-p", "color=red"],
            "unknown param `color`",
        ),
        (vec![], "param `name` is required"),
        (
            vec!["-p", "name=x", "-p", "loud=perhaps"],
            "param `loud`: expected boolean",
        ),
        (vec!["-p", "novalue"], "expected key=value"),
    ] {
        let mut all = vec!["run", "greet"];
        all.extend(args);
        let r = p.ferry(&all);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(want), "want {want}: {}", r.all());
    }
    let list = p.ferry(&["runs", "list", "--json"]).json();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "refused params record no run"
    );
}

#[test]
fn a_file_outside_scripts_runs_too() {
    let p = Project::new();
    p.write(
        "elsewhere/one.lua",
        "return { run = function(ctx) return ctx.job end }",
    );
    let r = p.ferry(&["run", "elsewhere/one.lua", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"], "one");
}

#[test]
fn runtime_and_syntax_errors_point_at_file_and_line() {
    let p = Project::new();
    p.script(
        "boom",
        "return {\n  run = function(ctx)\n    local t = nil\n    return t.x\n  end,\n}\n",
    );
    let r = p.ferry(&["run", "boom"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("scripts/boom.lua:4: attempt to index a nil value"),
        "{}",
        r.all()
    );
    let run = p.show(1);
    assert_eq!(run["state"], "failed");
    assert_eq!(run["error"]["code"], "run");
    assert!(
        run["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("scripts/boom.lua:4")
    );

    p.script(
        "explicit",
        "return { run = function(ctx)\n error('no input files') end }",
    );
    let r = p.ferry(&["run", "explicit"]);
    assert!(
        r.stderr.contains("scripts/explicit.lua:2: no input files"),
        "{}",
        r.all()
    );

    // An error raised inside a host function names the script line that called it.
    p.script(
        "hosterr",
        "return { run = function(ctx)\n\n ctx.secret('nope') end }",
    );
    let r = p.ferry(&["run", "hosterr"]);
    assert!(
        r.stderr
            .contains("scripts/hosterr.lua:3: secret 'nope' is not set"),
        "{}",
        r.all()
    );

    p.script(
        "syntax",
        "return {\n run = function(ctx)\n  if then\n end }\n",
    );
    let r = p.ferry(&["run", "syntax"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("scripts/syntax.lua:3:"), "{}", r.all());

    p.script("toperr", "local x = 1\nerror('broken at load')\nreturn {}");
    let r = p.ferry(&["run", "toperr"]);
    assert!(
        r.stderr.contains("scripts/toperr.lua:2: broken at load"),
        "{}",
        r.all()
    );

    let r = p.ferry(&["run", "missing"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("scripts/missing.lua does not exist"),
        "{}",
        r.all()
    );
}

#[test]
fn cron_errors_name_the_field_the_value_and_the_range() {
    let p = Project::new();
    let cases = [
        ("minute", "61 * * * *", "minute 61 is out of range 0-59"),
        ("hour", "0 25 * * *", "hour 25 is out of range 0-23"),
        ("dom", "0 0 32 * *", "day of month 32 is out of range 1-31"),
        ("month", "0 0 * 13 *", "month 13 is out of range 1-12"),
        ("dow", "0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("second", "75 0 0 * * *", "second 75 is out of range 0-59"),
        ("step", "*/0 * * * *", "minute step 0"),
        ("backwards", "0 9-5 * * *", "hour range 9-5 runs backwards"),
        (
            "word",
            "0 0 * * FUNDAY",
            "day of week \"FUNDAY\" is not valid",
        ),
        ("nmacro", "@nightly", "\"@nightly\" is not a known macro"),
    ];
    // A job may not take a name the API reserves.
    p.script("validate", "return { run = function() end }\n");
    let r = p.ferry(&["check", "scripts/validate.lua"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("`validate` is reserved"), "{}", r.all());
    std::fs::remove_file(p.at("scripts/validate.lua")).unwrap();
    let r = p.ferry(&["new", "validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.all().contains("`validate` is reserved"), "{}", r.all());
    for (name, cron, want) in cases {
        // The schedule on line 3, in a table, so the error points at `cron`'s own line.
        p.script(
            name,
            &format!(
                "return {{\n  description = \"x\",\n  schedule = {{\n    cron = {cron:?},\n  }},\n  run = function() end,\n}}\n"
            ),
        );
        let expected = format!(
            "scripts/{name}.lua:4: key `schedule.cron`: invalid cron expression {cron:?}: {want}"
        );
        let r = p.ferry(&["check", &format!("scripts/{name}.lua")]);
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        assert!(
            r.stdout.contains(&expected),
            "{name}: want {expected}\n{}",
            r.all()
        );
        // `ferry jobs` says the same.
        let r = p.ferry(&["jobs"]);
        assert!(r.stdout.contains(&expected), "{name} in jobs: {}", r.all());
        std::fs::remove_file(p.at(&format!("scripts/{name}.lua"))).unwrap();
    }
    // The short form names the key `schedule` and its line.
    p.script(
        "short",
        "return {\n  schedule = \"0 25 * * *\",\n  run = function() end,\n}\n",
    );
    let r = p.ferry(&["check"]);
    assert!(
        r.stdout.contains(
            "scripts/short.lua:2: key `schedule`: invalid cron expression \"0 25 * * *\": hour 25 is out of range 0-23"
        ),
        "{}",
        r.all()
    );
}

#[test]
fn jobs_aligns_columns_and_shows_local_and_utc_times() {
    let p = Project::new();
    p.script(
        "a_job_with_a_rather_long_name_indeed",
        r#"return { schedule = { cron = "0 2 * * *", timezone = "Europe/Paris" },
                    watch = "inbox/a/deeply/nested/folder/for/orders/*.orders-export.csv",
                    run = function() end }"#,
    );
    p.script("b", r#"return { run = function() end }"#);
    p.script(
        "c",
        r#"return { schedule = "30 1 * * *", run = function() end }"#,
    );
    let r = p.ferry_env(&["jobs"], &[("TZ", "Europe/Paris")]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    // Every column starts at the same character in every line, whatever the cell lengths.
    for header in ["TRIGGERS", "NEXT RUN", "LAST RUN", "STATUS"] {
        let col = lines[0].find(header).unwrap();
        for line in &lines[1..] {
            let before: String = line.chars().take(col).collect();
            assert!(
                before.ends_with("  ") && !line[before.len()..].starts_with(' '),
                "column {header} at {col} in {line:?}\n{}",
                r.stdout
            );
        }
    }
    let a = lines.iter().find(|l| l.starts_with("a_job")).unwrap();
    assert!(a.contains("*.orders-export.csv"), "nothing cut: {a}");
    // Local time with its zone, then UTC: 02:00 in Paris is 01:00 UTC in winter, 00:00 in
    // summer.
    assert!(
        a.contains(" 02:00 CET (01:00 UTC)") || a.contains(" 02:00 CEST (00:00 UTC)"),
        "{a}"
    );
    let c = lines.iter().find(|l| l.starts_with("c ")).unwrap();
    assert!(
        c.contains(" 02:30 CET (01:30 UTC)") || c.contains(" 03:30 CEST (01:30 UTC)"),
        "{c}"
    );
    // In UTC, one time; `--json` keeps RFC 3339 UTC whatever the zone.
    let r = p.ferry_env(&["jobs"], &[("TZ", "UTC")]);
    assert!(r.stdout.contains(" 01:30 UTC  "), "{}", r.stdout);
    let r = p.ferry_env(&["jobs", "--json"], &[("TZ", "Europe/Paris")]);
    let jobs = r.json();
    let c = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "c")
        .unwrap();
    let next = c["next_run"].as_str().unwrap();
    assert!(next.ends_with("T01:30:00.000Z"), "{next}");
}

#[test]
fn spec_errors_name_file_key_and_expectation() {
    let p = Project::new();
    let cases = [
        (
            "unknown_key",
            r#"return { schedul = "@daily", run = function() end }"#,
            "key `schedul`: unknown key",
        ),
        (
            "wrong_type",
            r#"return { description = 5, run = function() end }"#,
            "key `description`: expected a string, got a number",
        ),
        (
            "bad_duration",
            r#"return { timeout = "10 minutes", run = function() end }"#,
            "key `timeout`: expected a duration",
        ),
        (
            "bad_cron",
            r#"return { schedule = "61 * * * *", run = function() end }"#,
            "key `schedule`: invalid cron expression",
        ),
        (
            "missing_run",
            r#"return { description = "x" }"#,
            "key `run`: missing",
        ),
        ("not_table", r#"return 42"#, "must return a table"),
        (
            "bad_param",
            r#"return { params = { n = { type = "int" } }, run = function() end }"#,
            "key `params.n.type`",
        ),
        (
            "bad_overlap",
            r#"return { overlap = "maybe", run = function() end }"#,
            "key `overlap`: expected one of \"skip\", \"queue\", \"allow\"",
        ),
    ];
    for (name, src, want) in cases {
        p.script(name, src);
        let r = p.ferry(&["check", &format!("scripts/{name}.lua")]);
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        assert!(
            r.stdout.contains(&format!("scripts/{name}.lua:")),
            "{name} names the file: {}",
            r.all()
        );
        assert!(r.stdout.contains(want), "{name}: want {want}: {}", r.all());
        let r = p.ferry(&["run", name]);
        assert_eq!(r.code, 2, "{name}: {}", r.all());
        assert!(r.stderr.contains(want), "{name} via run: {}", r.all());
    }
    // `check` with no arguments checks every script and reports every problem.
    p.script(
        "good",
        r#"return { schedule = "*/5 * * * *", run = function() end }"#,
    );
    let r = p.ferry(&["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("ok    scripts/good.lua (schedule */5 * * * *)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("FAIL").count(),
        cases.len(),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&format!(
        "{} checked, {} failed",
        cases.len() + 1,
        cases.len()
    )));

    let good = Project::new();
    good.script("a", "return { run = function() end }");
    let r = good.ferry(&["check"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn sandbox_refuses_every_escape() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("outside")).unwrap();
    p.write("outside/evil.lua", "return 'escaped'");
    std::os::unix::fs::symlink(
        p.path().join("outside/evil.lua"),
        p.path().join("plugins/linked.lua"),
    )
    .unwrap();
    p.write(
        "plugins/util/strings.lua",
        "local M = {}\nfunction M.shout(s) return s:upper() .. '!' end\nreturn M",
    );
    p.script(
        "escape",
        r#"
        local function refused(f) local ok, err = pcall(f); return not ok, tostring(err) end
        local function absent(v) return v == nil end
        return { run = function(ctx)
          local r = {}
          r.io = absent(io)
          r.debug = absent(debug)
          r.package = absent(package)
          r.dofile = absent(dofile)
          r.loadfile = absent(loadfile)
          r.os_execute = absent(os.execute)
          r.os_getenv = absent(os.getenv)
          r.os_remove = absent(os.remove)
          r.os_exit = absent(os.exit)
          r.os_time = type(os.time()) == "number" and type(os.clock()) == "number" and type(os.date()) == "string"
          r.string_dump = absent(string.dump)
          local bytecode = "\27Lua\84\0\25\147\13\10\26\10\4\8\8\120\86\0\0\0\0\0\0\0\0\0\0\0\40\119\64\1"
          local f, err = load(bytecode)
          r.binary_chunk = f == nil and err:find("binary") ~= nil
          local f2, err2 = load(bytecode, "x", "b")
          r.binary_mode_forced = f2 == nil and err2:find("binary") ~= nil
          r.text_load = load("return 1 + 1")() == 2
          local env_f = load("return x", "chunk", "t", { x = 7 })
          r.load_env = env_f() == 7
          r.gc_stop = refused(function() collectgarbage("stop") end)
          r.gc_generational = refused(function() collectgarbage("generational") end)
          r.gc_setpause = refused(function() collectgarbage("setpause", 1000) end)
          r.gc_count = type(collectgarbage("count")) == "number"
          r.require_parent = refused(function() require("../outside/evil") end)
          r.require_abs = refused(function() require("/etc/passwd") end)
          r.require_slash = refused(function() require("util/strings") end)
          r.require_symlink = refused(function() require("linked") end)
          r.require_missing = refused(function() require("nothere") end)
          r.require_plugin = require("util.strings").shout("hi") == "HI!"
          r.require_cached = require("util.strings") == require("util.strings")
          r.require_ferry = require("ferry") == ferry
          return r
        end }"#,
    );
    let r = p.ferry(&["run", "escape", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let summary = r.json()["summary"].clone();
    for (k, v) in summary.as_object().unwrap() {
        assert_eq!(v, &json!(true), "sandbox check `{k}` failed: {summary}");
    }
    assert_eq!(summary.as_object().unwrap().len(), 27);

    p.script("reqmsg", "return { run = function() require('../x') end }");
    let r = p.ferry(&["run", "reqmsg"]);
    assert!(
        r.stderr.contains("module name '../x' is not allowed"),
        "{}",
        r.all()
    );
    p.script(
        "reqlink",
        "return { run = function() require('linked') end }",
    );
    let r = p.ferry(&["run", "reqlink"]);
    assert!(r.stderr.contains("leads outside plugins/"), "{}", r.all());
}

fn limit_case(p: &Project, name: &str, body: &str) -> serde_json::Value {
    p.script(
        name,
        &format!(
            "return {{ timeout = \"1s\", memory = \"32MiB\", run = function(ctx)\n{body}\nend }}"
        ),
    );
    let r = p.ferry(&["run", name, "--json"]);
    assert_eq!(r.code, 1, "{name}: {}", r.all());
    r.json()
}

#[test]
fn time_limit_holds_against_scripts_that_catch_errors() {
    let p = Project::new();
    p.write("ferry.toml", LIMITS);
    let cases = [
        ("plain", "while true do end"),
        (
            "pcall",
            "while true do pcall(function() while true do end end) end",
        ),
        (
            "xpcall",
            "while true do xpcall(function() while true do end end, function(e) return e end) end",
        ),
        (
            "xpcall_handler_loops",
            "while true do xpcall(function() error('x') end, function(e) while true do end end) end",
        ),
        (
            "wrap",
            "while true do pcall(coroutine.wrap(function() while true do end end)) end",
        ),
        (
            "resume",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        ),
        (
            "nested",
            "while true do pcall(pcall, pcall, function() while true do pcall(function() end) end end) end",
        ),
        (
            "backtracking",
            r#"return string.find(("a"):rep(28), ("a*"):rep(28) .. "b")"#,
        ),
    ];
    for (name, body) in cases {
        let run = limit_case(&p, name, body);
        assert_eq!(run["state"], "timed_out", "{name}: {run}");
        assert_eq!(run["error"]["code"], "timeout", "{name}: {run}");
    }
    let killed = p.show(8);
    assert!(
        killed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was killed"),
        "{killed}"
    );
    // The history holds every run, closed.
    let list = p
        .ferry(&["runs", "list", "--state", "timed_out", "--json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), cases.len());
}

#[test]
fn memory_limit_holds_against_scripts_that_catch_errors() {
    let p = Project::new();
    p.write("ferry.toml", LIMITS);
    let cases = [
        (
            "grow",
            "local t = {} while true do t[#t+1] = ('x'):rep(1024*1024) .. #t end",
        ),
        (
            "pcall_grow",
            "while true do pcall(function() local t = {} while true do t[#t+1] = ('x'):rep(1024*1024) .. #t end end) end",
        ),
        ("one_big", "local s = ('x'):rep(64 * 1024 * 1024)"),
        (
            "coroutine_grow",
            "while true do coroutine.resume(coroutine.create(function() local t = {} while true do t[#t+1] = {} end end)) end",
        ),
    ];
    for (name, body) in cases {
        let run = limit_case(&p, name, body);
        assert_eq!(run["state"], "failed", "{name}: {run}");
        assert_eq!(run["error"]["code"], "memory", "{name}: {run}");
        assert!(
            run["error"]["message"]
                .as_str()
                .unwrap()
                .contains("memory limit of 32 MiB"),
            "{run}"
        );
    }
}

#[test]
fn secrets_are_redacted_in_logs_errors_and_summaries() {
    let p = Project::new();
    p.write(
        "ferry.toml",
        "[secrets]\nfrom_file = \"file-secret-value\"\n",
    );
    p.script(
        "leak",
        r#"return { params = { fail = { type = "boolean", default = false } }, run = function(ctx)
          local a, b = ctx.secret("token"), ctx.secret("from_file")
          ctx.log.info("token is %s and %s", a, b)
          print("printed " .. a)
          if ctx.params.fail then error("failed with " .. a) end
          return { token = a, nested = { b } }
        end }"#,
    );
    let env = [("FERRY_SECRET_TOKEN", "s3cr3t-token-value")];
    let r = p.ferry_env(&["run", "leak"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let r2 = p.ferry_env(&["run", "leak", "-p", "fail=true"], &env);
    assert_eq!(r2.code, 1);
    for out in [
        r.all(),
        r2.all(),
        p.ferry(&["runs", "show", "1", "--json"]).stdout,
        p.ferry(&["runs", "show", "2"]).stdout,
    ] {
        assert!(
            !out.contains("s3cr3t-token-value") && !out.contains("file-secret-value"),
            "secret leaked: {out}"
        );
    }
    let run = p.show(1);
    assert_eq!(run["summary"], json!({"token": "***", "nested": ["***"]}));
    assert_eq!(run["logs"][0]["message"], "token is *** and ***");
    let failed = p.show(2);
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("failed with ***"),
        "{failed}"
    );
    // The database file itself holds no secret.
    let db = std::fs::read(p.path().join("data/ferry.db")).unwrap();
    let wal = std::fs::read(p.path().join("data/ferry.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains("s3cr3t-token-value"));
    }
}

#[test]
fn state_persists_between_runs_of_a_job() {
    let p = Project::new();
    p.script(
        "counter",
        r#"return { run = function(ctx)
          local seen = ctx.state:get("seen") or { count = 0 }
          seen.count = seen.count + 1
          seen.last = ctx.run_id
          ctx.state:set("seen", seen)
          local ok = pcall(function() ctx.state:set("bad", function() end) end)
          return { count = seen.count, unserialisable_refused = not ok }
        end }"#,
    );
    p.script(
        "other",
        "return { run = function(ctx) return ctx.state:get('seen') == nil end }",
    );
    for expected in 1..=2 {
        let r = p.ferry(&["run", "counter", "--json"]);
        assert_eq!(
            r.json()["summary"],
            json!({"count": expected, "unserialisable_refused": true})
        );
    }
    let r = p.ferry(&["run", "other", "--json"]);
    assert_eq!(r.json()["summary"], json!(true), "state is per job");
}

#[test]
fn artifacts_are_recorded() {
    let p = Project::new();
    p.script(
        "art",
        r#"return { run = function(ctx)
          ferry.store("data"):write("exports/a.csv", "a,b\n")
          ctx.artifact("data", "exports/a.csv")
          local mem = ferry.store("memory://scratch")
          mem:write("x/y.zip", "zip bytes")
          ctx.artifact(mem, "x/y.zip", "backup")
          -- A file that is not there is not recorded: the error says so.
          local ok, err = pcall(ctx.artifact, "data", "exports/none.csv")
          return { missing = err.kind }
        end }"#,
    );
    let r = p.ferry(&["run", "art", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["summary"]["missing"], "not_found");
    let run = p.show(1);
    let arts = run["artifacts"].as_array().unwrap();
    assert_eq!(arts.len(), 2);
    assert_eq!(
        (arts[0]["name"].as_str(), arts[0]["path"].as_str()),
        (Some("a.csv"), Some("exports/a.csv"))
    );
    assert_eq!(
        (arts[0]["size"].as_u64(), arts[1]["size"].as_u64()),
        (Some(4), Some(9))
    );
    assert_eq!(arts[1]["name"], "backup");
    assert_eq!(arts[1]["store"], "memory://scratch");
    // The memory store is gone with its run; the run's own copy stays.
    assert_eq!(
        std::fs::read_to_string(p.at("data/.ferry/artifacts/1/backup")).unwrap(),
        "zip bytes"
    );
}

#[test]
fn delete_and_list_filters() {
    let p = Project::new();
    p.script("ok", "return { run = function() end }");
    p.script("bad", "return { run = function() error('x') end }");
    for job in ["ok", "bad", "ok"] {
        p.ferry(&["run", job]);
    }
    let failed = p
        .ferry(&["runs", "list", "--state", "failed", "--json"])
        .json();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let ok = p.ferry(&["runs", "list", "--job", "ok", "--json"]).json();
    assert_eq!(
        ok.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 1]
    );
    let text = p.ferry(&["runs", "list"]).stdout;
    assert!(text.contains("run: scripts/bad.lua:1: x"), "{text}");

    let r = p.ferry(&["runs", "delete", "1", "2"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = p.ferry(&["runs", "delete", "2", "3"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("run 2 does not exist"), "{}", r.all());
    let all = p.ferry(&["runs", "list", "--json"]).json();
    assert_eq!(all.as_array().unwrap().len(), 0);
    let r = p.ferry(&["runs", "show", "1"]);
    assert_eq!(r.code, 1);
    let r = p.ferry(&["runs", "list", "--state", "bogus"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown run state"), "{}", r.all());
}

#[test]
fn cancel_from_another_process_and_by_signal() {
    let p = Project::new();
    p.write("ferry.toml", LIMITS);
    p.script(
        "slow",
        r#"return { timeout = "2m", run = function(ctx)
          ctx.log.info("started")
          local n = 0
          while true do n = n + 1 end
        end }"#,
    );
    // `ferry runs cancel` from another process, while the run is going.
    let mut child = p
        .cmd(&["run", "slow"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("run 1 to start", Duration::from_secs(20), || {
        p.last_run("slow")
            .filter(|r| r["state"] == "running")
            .map(|_| ())
    });
    let r = p.ferry(&["runs", "delete", "1"]);
    assert_eq!(r.code, 1, "a running run cannot be deleted");
    assert!(
        r.stderr.contains("run 1 is running; cancel it first"),
        "{}",
        r.all()
    );
    let r = p.ferry(&["runs", "cancel", "1"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let run = p.show(1);
    assert_eq!(run["state"], "cancelled", "{run}");
    assert_eq!(run["error"]["code"], "cancelled");

    // SIGINT to `ferry run` (Ctrl-C) cancels the run and records it.
    let mut child = p
        .cmd(&["run", "slow"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("run 2 to start", Duration::from_secs(20), || {
        p.last_run("slow")
            .filter(|r| r["id"] == 2 && r["state"] == "running")
            .map(|_| ())
    });
    signal(child.id(), SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(1));
    assert_eq!(p.show(2)["state"], "cancelled");
}

#[test]
fn malformed_config_is_a_clear_error() {
    let p = Project::new();
    p.script("a", "return { run = function() end }");
    p.write("ferry.toml", "[limits]\ntimeot = \"1s\"\n");
    let r = p.ferry(&["run", "a"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("ferry.toml") && r.stderr.contains("timeot"),
        "{}",
        r.all()
    );
    p.write("ferry.toml", "[limits]\nmemory = \"lots\"\n");
    let r = p.ferry(&["check"]);
    assert!(
        r.stderr.contains("limits.memory") && r.stderr.contains("expected a size"),
        "{}",
        r.all()
    );
    p.write("ferry.toml", "[secrets]\nx = \"${FERRY_TEST_UNSET_VAR}\"\n");
    let r = p.ferry(&["check"]);
    assert!(
        r.stderr
            .contains("secrets.x: environment variable FERRY_TEST_UNSET_VAR is not set"),
        "{}",
        r.all()
    );
}

#[test]
fn processes_opening_a_new_history_at_once_all_succeed() {
    // `ferry run` and a `ferry runs list` polling it may create the history database together.
    for _ in 0..5 {
        let p = Project::new();
        p.script("tiny", "return { run = function() return 1 end }");
        let children: Vec<_> = (0..12)
            .map(|i| {
                let args: &[&str] = if i % 2 == 0 {
                    &["run", "tiny"]
                } else {
                    &["runs", "list", "--json"]
                };
                p.cmd(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
