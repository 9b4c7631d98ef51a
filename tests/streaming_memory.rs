//! Peak memory of streaming: a job moves a 128 MiB object local → S3 → local through readers,
//! writers and `ferry.copy`, and the worker's peak resident set must stay far below the object's
//! size. Alone in its test binary, so that the children measured are this test's only.

mod common;

use common::Project;
use common::s3::S3Server;

const OBJECT_MIB: u64 = 128;
/// The bound asserted: the worker holds a few buffers (an S3 part of 5 MiB being filled, two
/// uploading, a response chunk, Lua's garbage of 1 MiB strings), never the object.
const PEAK_LIMIT_MIB: u64 = 100;

/// The largest peak resident set among this process's waited-for descendants, in KiB. `ferry
/// run` waits for its worker, so the worker is included.
fn children_peak_rss_kib() -> u64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
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
    let run = p.run_file(&file);
    assert!(run.succeeded(), "{}", run.text());
    let size = OBJECT_MIB * 1024 * 1024;
    assert_eq!(
        run.record["summary"],
        serde_json::json!({"copied": size, "read": size})
    );
    let peak_kib = children_peak_rss_kib();
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
