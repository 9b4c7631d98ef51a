//! Stores as scripts see them: Lua jobs run through the real binary (`ferry run FILE.lua`) in a
//! temp project, against local folders, memory and a real S3-compatible server.

use crate::common;

use common::Project;
use common::s3::S3Server;

/// A project whose `ferry.toml` names the server's bucket as store `backup`, with the
/// credentials read from environment variables.
fn project_with_backup(server: &S3Server, extra: &str) -> Project {
    let config = format!(
        r#"
[stores.backup]
url = "{url}"
endpoint = "{endpoint}"
access_key_id = "${{FERRY_TEST_AK}}"
secret_access_key = "${{FERRY_TEST_SK}}"
{extra}
"#,
        url = server.url("nightly"),
        endpoint = server.endpoint(),
    );
    let mut p = Project::with_config(&config);
    p.set_env("FERRY_TEST_AK", &server.access_key);
    p.set_env("FERRY_TEST_SK", &server.secret_key);
    p
}

/// Asserts that no credential of the server appears anywhere a user could see it.
fn assert_no_credentials(server: &S3Server, texts: &[&str]) {
    for text in texts {
        assert!(
            !text.contains(&server.secret_key),
            "secret key leaked:\n{text}"
        );
        assert!(
            !text.contains(&server.access_key),
            "access key leaked:\n{text}"
        );
    }
}

const EXERCISE: &str = r#"
-- Uses every Store method on a store and returns what it saw.
local function exercise(s)
  local out = {}
  s:write("dir/a.txt", "alpha\nbeta\r\ngamma")
  s:write("dir/b.txt", "bee")
  out.read = s:read("dir/a.txt")
  out.exists = s:exists("dir/a.txt")
  out.missing = s:exists("dir/none.txt")
  out.stat_size = s:stat("dir/a.txt").size
  out.stat_has_modified = type(s:stat("dir/a.txt").modified) == "string"
  out.stat_missing = s:stat("dir/none.txt") == nil
  local listed = {}
  for _, e in ipairs(s:list("dir")) do listed[#listed + 1] = e.path .. "=" .. e.size end
  out.list = table.concat(listed, ",")
  local r = s:open("dir/a.txt")
  out.first = r:read(3)
  out.rest_line = r:read("l")
  local lines = {}
  for line in r:lines() do lines[#lines + 1] = line end
  out.lines = table.concat(lines, "|")
  out.eof = r:read(10) == nil
  r:close()
  local w = s:create("made/by/writer.txt")
  w:write("one ", 2, " three"):write("!")
  out.visible_before_close = s:exists("made/by/writer.txt")
  w:close()
  out.written = s:read("made/by/writer.txt")
  s:write("streamed.txt", s:open("dir/b.txt"))
  out.streamed = s:read("streamed.txt")
  s:copy("dir/b.txt", "copied.txt")
  out.copied = s:read("copied.txt")
  s:delete("copied.txt")
  out.deleted = not s:exists("copied.txt")
  s:write("lock", "mine", { if_absent = true })
  local ok, err = pcall(s.write, s, "lock", "theirs", { if_absent = true })
  out.lock_refused = (not ok) and tostring(err):find("already exists", 1, true) ~= nil
  local lw = s:create("lock", { if_absent = true })
  lw:write("theirs")
  local ok2, err2 = pcall(lw.close, lw)
  out.lock_writer_refused = (not ok2) and tostring(err2):find("already exists", 1, true) ~= nil
  out.lock = s:read("lock")
  local ok3, err3 = pcall(s.read, s, "dir/none.txt")
  out.not_found = (not ok3) and tostring(err3):find("not found", 1, true) ~= nil
  out.url = s:url()
  out.object_url = s:url("dir/a.txt")
  out.tostring = tostring(s)
  return out
end
"#;

#[test]
fn every_store_method_works_on_local_memory_and_s3() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let script = format!(
        r#"{EXERCISE}
return {{
  run = function(ctx)
    local inline = ferry.store("{inline_url}", {{
      endpoint = "{endpoint}", access_key_id = "{ak}", secret_access_key = "{sk}",
    }})
    local results = {{
      ["local"] = exercise(ferry.store("data/lua")),
      memory = exercise(ferry.store("memory://")),
      named = exercise(ferry.store("backup")),
      inline = exercise(inline),
    }}
    -- A script that logs a credential gets it masked.
    ctx.log.info("the key is {sk}")
    ctx.artifact(ferry.store("backup"), "dir/a.txt")
    return results
  end,
}}
"#,
        inline_url = server.url("inline"),
        endpoint = server.endpoint(),
        ak = server.access_key,
        sk = server.secret_key,
    );
    let file = p.root_script("methods", &script);
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let root_url = format!("file://{}", p.at("data/lua").display());
    let urls = [
        ("local", root_url.clone(), format!("store {root_url}")),
        (
            "memory",
            "memory://".to_string(),
            "store memory://".to_string(),
        ),
        (
            "named",
            server.url("nightly"),
            format!("store backup ({})", server.url("nightly")),
        ),
        (
            "inline",
            server.url("inline"),
            format!("store {}", server.url("inline")),
        ),
    ];
    for (kind, url, shown) in urls {
        let r = &run.record["summary"][kind];
        let expect = serde_json::json!({
            "read": "alpha\nbeta\r\ngamma",
            "exists": true,
            "missing": false,
            "stat_size": 17,
            "stat_has_modified": true,
            "stat_missing": true,
            "list": "dir/a.txt=17,dir/b.txt=3",
            "first": "alp",
            "rest_line": "ha",
            "lines": "beta|gamma",
            "eof": true,
            "visible_before_close": false,
            "written": "one 2 three!",
            "streamed": "bee",
            "copied": "bee",
            "deleted": true,
            "lock_refused": true,
            "lock_writer_refused": true,
            "lock": "mine",
            "not_found": true,
            "url": url,
            "object_url": format!("{}/dir/a.txt", if kind == "memory" { "memory://" } else { &url }),
            "tostring": shown,
        });
        assert_eq!(r, &expect, "{kind}");
    }
    // The named store's objects are real objects on the server.
    assert_eq!(
        std::fs::read(server.object_file("nightly/made/by/writer.txt")).unwrap(),
        b"one 2 three!"
    );
    let id = run.record["id"].as_i64().unwrap();
    let history = p.history(id);
    assert!(history.contains("the key is ***"), "{history}");
    assert!(
        history.contains(&format!("\"store\": \"{}\"", server.url("nightly"))),
        "{history}"
    );
    assert_no_credentials(&server, &[&run.text(), &history]);
    assert!(server.pending_uploads().is_empty());
}

#[test]
fn cross_store_copy_local_s3_memory_local_keeps_every_byte() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let file = p.root_script(
        "hops",
        r#"
return {
  run = function(ctx)
    local src, s3, mem, dst = ferry.store("data/in"), ferry.store("backup"), ferry.store("memory://hop"), ferry.store("data/out")
    local w = src:create("src.bin")
    -- 13 MiB of varied bytes: several multipart parts on S3.
    for i = 1, 13 * 16 do
      local block = {}
      for j = 1, 64 do block[j] = string.char((i * 7 + j * 13) % 256):rep(1024) end
      w:write(table.concat(block))
    end
    w:close()
    local n1 = ferry.copy(src, "src.bin", s3, "hop/1.bin")
    local n2 = ferry.copy(s3, "hop/1.bin", mem, "2.bin")
    local n3 = ferry.copy(mem, "2.bin", dst, "final.bin")
    -- A hashed copy reads once and hashes exactly what it wrote.
    local n4, sha = ferry.copy(s3, "hop/1.bin", dst, "hashed.bin", { sha256 = true })
    assert(sha == ferry.hash.sha256(src:open("src.bin")), sha)
    assert(sha == ferry.hash.sha256(dst:open("hashed.bin")))
    mem:write("abc", "abc")
    local n5, abc = ferry.copy(mem, "abc", mem, "abc2", { sha256 = true })
    assert(n5 == 3 and abc == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", abc)
    assert(mem:read("abc2") == "abc")
    local ok, err = pcall(ferry.copy, mem, "abc", mem, "abc3", { sha = true })
    assert(not ok and tostring(err):find("unknown option `sha`"), tostring(err))
    assert(n4 == n1)
    return { n1 = n1, n2 = n2, n3 = n3 }
  end,
}
"#,
    );
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let size = 13 * 1024 * 1024;
    assert_eq!(
        run.record["summary"],
        serde_json::json!({"n1": size, "n2": size, "n3": size})
    );
    let a = std::fs::read(p.at("data/in/src.bin")).unwrap();
    let b = std::fs::read(p.at("data/out/final.bin")).unwrap();
    let c = std::fs::read(server.object_file("nightly/hop/1.bin")).unwrap();
    assert_eq!(a.len(), size);
    assert!(a == b && a == c, "bytes differ after the hops");
    assert!(server.pending_uploads().is_empty());
}

#[test]
fn confinement_escapes_are_refused() {
    let p = Project::with_config("");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"outside").unwrap();
    std::fs::create_dir_all(p.at("data/store")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.at("data/store/link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.at("data/linked")).unwrap();
    let file = p.root_script(
        "escape",
        &r#"
local function try(f)
  local ok, err = pcall(f)
  if ok then return "allowed" end
  return tostring(err)
end
return {
  run = function(ctx)
    local s = ferry.store("data/store")
    return {
      absolute = try(function() return ferry.store("/etc") end),
      file_url = try(function() return ferry.store("file:///etc") end),
      outside = try(function() return ferry.store("@OUT@") end),
      dotdot_store = try(function() return ferry.store("data/../..") end),
      dotdot_path = try(function() return s:read("../../ferry.toml") end),
      symlink_read = try(function() return s:read("link/secret.txt") end),
      symlink_write = try(function() return s:write("link/new.txt", "x") end),
      symlink_root = try(function() return ferry.store("data/linked") end),
      history_db = try(function() return ferry.store("data"):read("ferry.db") end),
    }
  end,
}
"#
        .replace("@OUT@", &outside.path().display().to_string()),
    );
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let s = &run.record["summary"];
    let roots = format!("{}, {}", p.at("data").display(), p.at("inbox").display());
    let out = outside.path().display().to_string();
    let cases = [
        ("absolute", vec!["denied", "/etc", roots.as_str()]),
        ("file_url", vec!["denied", "/etc", roots.as_str()]),
        ("outside", vec!["denied", out.as_str(), roots.as_str()]),
        ("dotdot_store", vec!["`..`", "data/../.."]),
        ("dotdot_path", vec!["invalid path", "../../ferry.toml"]),
        (
            "symlink_read",
            vec!["denied", "link/secret.txt", out.as_str(), roots.as_str()],
        ),
        (
            "symlink_write",
            vec!["denied", "link/new.txt", roots.as_str()],
        ),
        (
            "symlink_root",
            vec!["denied", "data/linked", roots.as_str()],
        ),
        ("history_db", vec!["denied", "ferry.db"]),
    ];
    for (key, wants) in cases {
        let msg = s[key].as_str().unwrap_or("");
        for want in wants {
            assert!(msg.contains(want), "{key}: {want:?} missing in {msg}");
        }
    }
    assert!(!outside.path().join("new.txt").exists());
}

#[test]
fn wrong_credentials_are_denied_without_showing_them() {
    let server = S3Server::start();
    let p = Project::with_config("");
    let file = p.root_script(
        "wrong",
        &r#"
return {
  run = function(ctx)
    local s = ferry.store("@URL@", { endpoint = "@EP@", access_key_id = "@AK@", secret_access_key = "wrong-@SK@" })
    s:write("x", "y")
  end,
}
"#
        .replace("@URL@", &server.url("p"))
        .replace("@EP@", &server.endpoint())
        .replace("@AK@", &server.access_key)
        .replace("@SK@", &server.secret_key),
    );
    let run = p.run_file(&file);
    assert!(!run.succeeded());
    let err = run.error();
    assert!(err.contains("denied"), "{err}");
    assert!(err.contains(&server.url("p")), "{err}");
    assert!(err.contains("write \"x\""), "{err}");
    let history = p.history(run.record["id"].as_i64().unwrap());
    // The script file holds the keys, but no output, log, error or history row does.
    assert_no_credentials(&server, &[&run.text(), &history]);
}

#[test]
fn s3_server_stopped_mid_upload_fails_the_run_and_leaves_nothing() {
    let mut server = S3Server::start();
    let p = project_with_backup(&server, "");
    let file = p.root_script(
        "upload",
        r#"
return {
  timeout = "2m",
  run = function(ctx)
    local s, l = ferry.store("backup"), ferry.store("data")
    local w = s:create("upload.bin")
    local chunk = string.rep("u", 1024 * 1024)
    for i = 1, 12 do w:write(chunk) end   -- two parts are uploading or uploaded
    l:write("ready", "1")
    while not l:exists("go") do end      -- the test stops the server meanwhile
    for i = 1, 12 do w:write(chunk) end
    w:close()
  end,
}
"#,
    );
    let child = p.spawn_file(&file);
    let ready = p.at("data/ready");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !server.pending_uploads().is_empty(),
        "no multipart upload started"
    );
    server.stop();
    std::fs::write(p.at("data/go"), b"1").unwrap();
    let run = Project::parse_run(child.wait_with_output().unwrap());
    assert!(!run.succeeded(), "{}", run.text());
    let err = run.error();
    assert!(err.contains("unreachable"), "{err}");
    assert!(
        err.contains(&format!("backup ({})", server.url("nightly"))),
        "{err}"
    );
    assert!(err.contains("upload.bin"), "{err}");

    // The abort could not reach the server; it is journaled and done when the store is next
    // opened, once the server is back.
    server.restart();
    let check = p.root_script(
        "check",
        r#"return { run = function(ctx) return { exists = ferry.store("backup"):exists("upload.bin") } end }"#,
    );
    let run2 = p.run_file(&check);
    assert!(run2.succeeded(), "{}", run2.text());
    assert_eq!(run2.record["summary"]["exists"], false);
    assert_eq!(server.pending_uploads(), Vec::<std::path::PathBuf>::new());
    assert!(!server.object_file("nightly/upload.bin").exists());
    assert!(p.files("data/.ferry/pending").is_empty());
}

#[test]
fn killed_worker_leaves_nothing_after_the_next_start() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "\n[limits]\nkill_grace = \"1s\"\n");
    // The worker is stuck in a C function (the hook cannot fire) past its deadline, and the
    // executor kills it: no clean-up runs in the worker.
    let file = p.root_script(
        "stuck",
        r#"
return {
  timeout = "1s",
  run = function(ctx)
    local lw = ferry.store("data/out"):create("half.csv")
    lw:write(string.rep("x", 100000))
    local sw = ferry.store("backup"):create("half.bin")
    local chunk = string.rep("s", 1024 * 1024)
    for i = 1, 12 do sw:write(chunk) end
    string.find(("a"):rep(28), ("a*"):rep(28) .. "b")
  end,
}
"#,
    );
    let run = p.run_file(&file);
    assert!(!run.succeeded());
    assert!(run.error().contains("killed"), "{}", run.error());
    let temps: Vec<String> = p
        .files("data/out")
        .into_iter()
        .filter(|f| f.contains(".ferry-tmp-"))
        .collect();
    assert_eq!(temps.len(), 1, "the killed worker's temp file: {temps:?}");
    assert!(!server.pending_uploads().is_empty());

    let check = p.root_script(
        "after",
        r#"return { run = function(ctx)
  ferry.store("data/out")
  return { s3 = ferry.store("backup"):exists("half.bin"), l = ferry.store("data/out"):exists("half.csv") }
end }"#,
    );
    let run2 = p.run_file(&check);
    assert!(run2.succeeded(), "{}", run2.text());
    assert_eq!(
        run2.record["summary"],
        serde_json::json!({"s3": false, "l": false})
    );
    assert!(p.files("data/out").is_empty(), "{:?}", p.files("data/out"));
    assert_eq!(server.pending_uploads(), Vec::<std::path::PathBuf>::new());
    assert!(p.files("data/.ferry/pending").is_empty());
}

#[test]
fn unclosed_writers_are_discarded() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let ok = p.root_script(
        "forgets",
        r#"
return {
  run = function(ctx)
    ferry.store("data/out"):create("forgotten.txt"):write("lost")
    local w = ferry.store("backup"):create("forgotten.bin")
    for i = 1, 12 do w:write(string.rep("f", 1024 * 1024)) end
    return { done = true }
  end,
}
"#,
    );
    let run = p.run_file(&ok);
    assert!(run.succeeded(), "{}", run.text());
    let history = p.history(run.record["id"].as_i64().unwrap());
    assert!(history.contains("was never closed"), "{history}");
    assert!(history.contains("forgotten.txt"), "{history}");
    assert!(history.contains("forgotten.bin"), "{history}");

    let fails = p.root_script(
        "fails",
        r#"
return {
  run = function(ctx)
    local w = ferry.store("data/out"):create("failed.txt")
    w:write("partial")
    local s = ferry.store("backup"):create("failed.bin")
    for i = 1, 12 do s:write(string.rep("f", 1024 * 1024)) end
    error("boom")
  end,
}
"#,
    );
    let run = p.run_file(&fails);
    assert!(!run.succeeded());
    assert!(run.error().contains("boom"), "{}", run.error());
    assert!(p.files("data/out").is_empty(), "{:?}", p.files("data/out"));
    assert_eq!(server.pending_uploads(), Vec::<std::path::PathBuf>::new());
    assert!(!server.object_file("nightly/forgotten.bin").exists());
    assert!(!server.object_file("nightly/failed.bin").exists());
    assert!(p.files("data/.ferry/pending").is_empty());
}

/// A script that opens a local and an S3 writer, writes past one part, signals `data/ready`
/// and then spins until stopped from outside.
const SPIN_WITH_OPEN_WRITERS: &str = r#"
return {
  timeout = "@TIMEOUT@",
  run = function(ctx)
    local lw = ferry.store("data/out"):create("spun.csv")
    lw:write(string.rep("x", 100000))
    local sw = ferry.store("backup"):create("spun.bin")
    for i = 1, 12 do sw:write(string.rep("s", 1024 * 1024)) end
    ferry.store("data"):write("ready", "1")
    while true do end
  end,
}
"#;

fn assert_spun_writers_discarded(p: &Project, server: &S3Server) {
    assert!(p.files("data/out").is_empty(), "{:?}", p.files("data/out"));
    assert_eq!(server.pending_uploads(), Vec::<std::path::PathBuf>::new());
    assert!(!server.object_file("nightly/spun.bin").exists());
    assert!(p.files("data/.ferry/pending").is_empty());
}

#[test]
fn timeout_before_close_discards_the_writes() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let file = p.root_script("spin", &SPIN_WITH_OPEN_WRITERS.replace("@TIMEOUT@", "2s"));
    let run = p.run_file(&file);
    assert_eq!(run.record["state"], "timed_out", "{}", run.text());
    assert_spun_writers_discarded(&p, &server);
}

#[test]
fn cancel_before_close_discards_the_writes() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let file = p.root_script("spin", &SPIN_WITH_OPEN_WRITERS.replace("@TIMEOUT@", "2m"));
    let child = p.spawn_file(&file);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !p.at("data/ready").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Ctrl-C: `ferry run` asks its worker to cancel the run.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let run = Project::parse_run(child.wait_with_output().unwrap());
    assert_eq!(run.record["state"], "cancelled", "{}", run.text());
    assert_spun_writers_discarded(&p, &server);
}

#[test]
fn copy_files_copies_hashes_verifies_between_local_and_s3_and_refuses_malformed_lists() {
    let server = S3Server::start();
    let p = project_with_backup(&server, "");
    let file = p.root_script(
        "bulk",
        r#"
return {
  run = function(ctx)
    local src, s3, dst = ferry.store("data/in"), ferry.store("backup"), ferry.store("data/out")
    src:write("a/one.txt", "one")
    src:write("a/b/two.txt", string.rep("two", 100000))
    src:write("three.txt", "three")
    dst:write("kept.txt", "old")
    local sha_one = ferry.hash.sha256("one")
    local out = {}
    -- Local to S3, then S3 back to local with the digests checked on the way.
    local up = ferry.copy_files(src, s3, { { from = "a/one.txt", to = "bulk/one.txt" },
      { from = "a/b/two.txt", to = "bulk/two.txt" }, { from = "none.txt" } })
    out.up = { up[1].ok, up[1].size, up[1].sha256 == sha_one, up[2].ok, up[3].ok, up[3].kind }
    local down = ferry.copy_files(s3, dst, { { from = "bulk/one.txt", to = "one.txt", sha256 = sha_one },
      { from = "bulk/two.txt", to = "deep/er/two.txt", sha256 = up[2].sha256 },
      { from = "bulk/one.txt", to = "bad.txt", sha256 = string.rep("0", 64) } })
    out.down = { down[1].ok, down[2].ok, down[3].ok, down[3].kind, down[3].sha256 == sha_one }
    -- Local to local: conflicts, and a mismatch into S3 leaves nothing there either.
    local skip = ferry.copy_files(src, dst, { { from = "three.txt", to = "kept.txt" }, { from = "three.txt" } },
      { on_conflict = "skip" })
    out.skip = { skip[1].ok, skip[1].skipped, skip[2].ok }
    local fail = ferry.copy_files(src, dst, { { from = "three.txt", to = "kept.txt" } }, { on_conflict = "fail" })
    out.fail = { fail[1].ok, fail[1].kind }
    local bad_up = ferry.copy_files(src, s3, { { from = "three.txt", to = "bulk/bad.txt", sha256 = sha_one } })
    out.bad_up = { bad_up[1].ok, bad_up[1].kind, s3:exists("bulk/bad.txt") }
    -- Malformed lists and options are `invalid` errors naming the entry.
    local malformed = {}
    for i, case in ipairs({
      { "not a list" }, { { 42 } }, { { { to = "x" } } }, { { { from = 7 } } },
      { { { from = "three.txt", sha256 = "xyz" } } }, { { { from = "three.txt", size = 3 } } },
      { { { from = "three.txt" } }, { on_conflict = "sometimes" } }, { { { from = "three.txt" } }, { speed = 1 } },
    }) do
      local ok, err = pcall(ferry.copy_files, src, dst, case[1], case[2])
      malformed[i] = (not ok) and (type(err) == "userdata" and err.kind or tostring(err)) or "accepted"
    end
    out.malformed = malformed
    local ok, err = pcall(ferry.copy_files, src, 42, {})
    out.not_a_store = not ok and tostring(err):find("expected a store") ~= nil
    -- A path with `..` or a reserved temp name is refused per file, not for the whole call.
    local refused = ferry.copy_files(src, dst, { { from = "../in/three.txt", to = "x.txt" },
      { from = "three.txt", to = ".x.ferry-tmp-1-2-3" }, { from = "three.txt", to = "fine.txt" } })
    out.refused = { refused[1].kind, refused[2].kind, refused[3].ok }
    return out
  end,
}
"#,
    );
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let s = &run.record["summary"];
    assert_eq!(
        s["up"],
        serde_json::json!([true, 3, true, true, false, "not_found"])
    );
    assert_eq!(
        s["down"],
        serde_json::json!([true, true, false, "data", true])
    );
    assert_eq!(s["skip"], serde_json::json!([true, true, true]));
    assert_eq!(s["fail"], serde_json::json!([false, "already_exists"]));
    assert_eq!(s["bad_up"], serde_json::json!([false, "data", false]));
    let malformed: Vec<&str> = s["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or("?"))
        .collect();
    assert_eq!(malformed.len(), 8);
    for (i, m) in malformed.iter().enumerate() {
        assert!(
            *m == "invalid" || m.contains("copy_files"),
            "case {}: {m}",
            i + 1
        );
    }
    assert_eq!(s["not_a_store"], true);
    assert_eq!(
        s["refused"],
        serde_json::json!(["invalid", "invalid", true])
    );
    assert_eq!(std::fs::read(p.at("data/out/one.txt")).unwrap(), b"one");
    assert_eq!(std::fs::read(p.at("data/out/kept.txt")).unwrap(), b"old");
    assert_eq!(
        std::fs::read(p.at("data/out/deep/er/two.txt"))
            .unwrap()
            .len(),
        300_000
    );
    assert!(!p.at("data/out/bad.txt").exists());
    assert!(server.pending_uploads().is_empty());
    // No temp file and no journal entry left behind.
    let mut stack = vec![p.at("data/out")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains(".ferry-tmp-"),
                "{name} left in {}",
                d.display()
            );
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    let pending = p.at("data/.ferry/pending");
    assert_eq!(
        std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(0),
        0
    );
}
