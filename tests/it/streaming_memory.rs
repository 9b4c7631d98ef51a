//! Peak memory of streaming: a job moves a 128 MiB object local → S3 → local through readers,
//! writers and `ferry.copy`, and the worker's peak resident set must stay far below the object's
//! size. The peak is the one GNU `time` reports for the `ferry run` process this test starts (its own
//! and that of the worker it waits for), so other tests' children in the same binary do not count.

use crate::common;

use common::Project;
use common::s3::S3Server;

const OBJECT_MIB: u64 = 128;
/// The bound asserted: the worker holds a few buffers (an S3 part of 5 MiB being filled, two
/// uploading, a response chunk, Lua's garbage of 1 MiB strings), never the object.
const PEAK_LIMIT_MIB: u64 = 100;

/// Runs a script file like `Project::run_file` under GNU `time`, and returns with the run the
/// peak resident set in KiB of that `ferry run` process and of the descendants it waited for
/// (its worker). `time` is a small process of its own: a child of this (large, multi-test)
/// binary would inherit the binary's own peak at `exec`, and `RUSAGE_CHILDREN` would count the
/// children of every other test.
fn run_measured(p: &Project, file: &str) -> (common::RunResult, u64) {
    let cmd = p.cmd(&["run", "--json", file]);
    let peak_file = p.at("peak-rss.txt");
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&peak_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let output = timed
        .output()
        .expect("GNU time (Debian package time; tests/setup.sh installs it)");
    let peak = std::fs::read_to_string(&peak_file).expect("time wrote the peak");
    let peak = peak
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("time's %M {peak:?}: {e}"));
    (Project::parse_run(output), peak)
}

#[test]
fn streaming_128_mib_keeps_the_worker_small() {
    let server = S3Server::start();
    let mut p = Project::with_config(&format!(
        r#"
[stores.backup]
url = "{}"
endpoint = "{}"
access_key_id = "${{FERRY_TEST_AK}}"
secret_access_key = "${{FERRY_TEST_SK}}"
"#,
        server.url("big"),
        server.endpoint()
    ));
    p.set_env("FERRY_TEST_AK", &server.access_key);
    p.set_env("FERRY_TEST_SK", &server.secret_key);
    let file = p.root_script(
        "big",
        &r#"
return {
  run = function(ctx)
    local l, s = ferry.store("data"), ferry.store("backup")
    local mib = 1024 * 1024
    -- 1. Write @N@ MiB through a local writer.
    local w = l:create("in.bin")
    for i = 1, @N@ do w:write(string.format("%08d", i), string.rep(string.char(i % 256), mib - 8)) end
    w:close()
    -- 2. Copy it to S3 (multipart upload, streaming).
    local copied = ferry.copy(l, "in.bin", s, "obj.bin")
    -- 3. Read it back from S3 in chunks into another local writer.
    local r, out, n = s:open("obj.bin"), l:create("out.bin"), 0
    while true do
      local chunk = r:read(mib)
      if not chunk then break end
      n = n + #chunk
      out:write(chunk)
    end
    out:close()
    -- 4. And once more, S3 to local, streamed by store:write(path, reader).
    l:write("again.bin", s:open("obj.bin"))
    return { copied = copied, read = n }
  end,
}
"#
        .replace("@N@", &OBJECT_MIB.to_string()),
    );
    let (run, peak_kib) = run_measured(&p, &file);
    assert!(run.succeeded(), "{}", run.text());
    let size = OBJECT_MIB * 1024 * 1024;
    assert_eq!(
        run.record["summary"],
        serde_json::json!({"copied": size, "read": size})
    );
    let a = std::fs::read(p.at("data/in.bin")).unwrap();
    assert_eq!(a.len() as u64, size);
    assert!(a == std::fs::read(p.at("data/out.bin")).unwrap());
    assert!(a == std::fs::read(p.at("data/again.bin")).unwrap());
    assert!(a == std::fs::read(server.object_file("big/obj.bin")).unwrap());
    eprintln!(
        "peak RSS of the worker streaming {OBJECT_MIB} MiB (three times): {} MiB",
        peak_kib / 1024
    );
    assert!(
        peak_kib < PEAK_LIMIT_MIB * 1024,
        "peak RSS {} MiB is not bounded (limit {PEAK_LIMIT_MIB} MiB)",
        peak_kib / 1024
    );
}
