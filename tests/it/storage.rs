//! The storage conformance suite: the same tests against a local, a memory and an S3 store
//! (a real `s3s-fs` server), through the plain Rust API of `ferry::storage`. Plus the local
//! confinement and the cross-store copy.

use crate::common;

use std::io::{BufRead, Read, Write};
use std::path::Path;

use common::pattern;
use common::s3::S3Server;
use ferry::storage::{
    self, S3Options, StorageConfig, Store, StoreRegistry, WriteOptions, is_temp_name,
};

const MIB: usize = 1024 * 1024;

/// One store under test, with what it needs to stay alive and to be inspected.
struct Fixture {
    store: Store,
    registry: StoreRegistry,
    dir: tempfile::TempDir,
    server: Option<S3Server>,
}

fn config(dir: &Path) -> StorageConfig {
    StorageConfig::new(dir, vec![dir.join("data")])
}

impl Fixture {
    fn local() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let registry = StoreRegistry::new(config(dir.path()));
        let store = registry.open("data/store", S3Options::default()).unwrap();
        Fixture {
            store,
            registry,
            dir,
            server: None,
        }
    }

    fn memory() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let registry = StoreRegistry::new(config(dir.path()));
        let store = registry.open("memory://", S3Options::default()).unwrap();
        Fixture {
            store,
            registry,
            dir,
            server: None,
        }
    }

    fn s3() -> Fixture {
        let server = S3Server::start();
        let dir = tempfile::tempdir().unwrap();
        let registry = StoreRegistry::new(config(dir.path()));
        let store = registry
            .open(&server.url("some/prefix"), server.options())
            .unwrap();
        Fixture {
            store,
            registry,
            dir,
            server: Some(server),
        }
    }

    /// Nothing pending anywhere: no temp file in the project, no journal entry, no multipart
    /// upload on the server.
    fn assert_no_leftovers(&self) {
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                assert!(!is_temp_name(&p), "temp file left behind: {}", p.display());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        let journal = self.dir.path().join("data/.ferry/pending");
        let entries: Vec<_> = std::fs::read_dir(&journal)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(entries.is_empty(), "journal entries left: {entries:?}");
        if let Some(s) = &self.server {
            assert_eq!(s.pending_uploads(), Vec::<std::path::PathBuf>::new());
        }
    }
}

fn paths(store: &Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect()
}

fn basic(f: &Fixture) {
    let s = &f.store;
    let no = WriteOptions::default();
    s.write("a/b.txt", b"bee", no).unwrap();
    s.write("a/c.txt", b"sea", no).unwrap();
    s.write("d.txt", b"dee", no).unwrap();
    assert_eq!(s.read("a/b.txt", 1024).unwrap(), b"bee");
    let m = s.stat("a/c.txt").unwrap().unwrap();
    assert_eq!((m.path.as_str(), m.size), ("a/c.txt", 3));
    assert!(m.modified.is_some());
    assert!(s.exists("d.txt").unwrap());
    assert!(!s.exists("nope.txt").unwrap());
    assert!(s.stat("nope.txt").unwrap().is_none());

    assert_eq!(paths(s, ""), ["a/b.txt", "a/c.txt", "d.txt"]);
    assert_eq!(paths(s, "a"), ["a/b.txt", "a/c.txt"]);
    assert_eq!(paths(s, "a/"), ["a/b.txt", "a/c.txt"]);
    assert!(paths(s, "zz").is_empty());

    s.write("d.txt", b"dee2", no).unwrap();
    assert_eq!(s.read("d.txt", 1024).unwrap(), b"dee2");

    s.copy("a/b.txt", "e/copy.txt").unwrap();
    assert_eq!(s.read("e/copy.txt", 1024).unwrap(), b"bee");
    s.delete("e/copy.txt").unwrap();
    assert!(!s.exists("e/copy.txt").unwrap());
    // Deleting what is not there is fine (as on S3).
    s.delete("e/copy.txt").unwrap();

    let e = s.read("missing.txt", 1024).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("missing.txt"), "{e}");
    assert!(e.to_string().contains("read"), "{e}");
    assert!(e.to_string().contains(&s.url()), "{e}");
    assert!(s.open("missing.txt").err().unwrap().is_not_found());
    let e = s.copy("missing.txt", "x.txt").unwrap_err();
    assert!(e.is_not_found(), "{e}");

    let e = s.read("big", 0).err();
    assert!(e.is_none() || e.unwrap().is_not_found());
    let e = s.read("a/b.txt", 2).unwrap_err();
    assert!(e.to_string().contains("open()"), "{e}");

    for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
        let e = s.write(bad, b"x", no).unwrap_err();
        assert!(e.to_string().contains("invalid path"), "{bad:?}: {e}");
        assert!(s.read(bad, 10).is_err());
    }
    assert!(s.list("../").is_err());
    f.assert_no_leftovers();
}

/// Writes `size` bytes of the pattern through a writer, in odd-sized chunks.
fn write_pattern(s: &Store, path: &str, seed: u64, size: usize) {
    let mut w = s.create(path, WriteOptions::default()).unwrap();
    let mut buf = vec![0u8; MIB + 7];
    let mut off = 0;
    while off < size {
        let n = buf.len().min(size - off);
        pattern(seed, off as u64, &mut buf[..n]);
        w.write_all(&buf[..n]).unwrap();
        off += n;
    }
    // Not visible before the commit.
    assert!(!s.exists(path).unwrap());
    w.commit().unwrap();
}

/// Reads an object through a reader and compares it with the pattern.
fn check_pattern(s: &Store, path: &str, seed: u64, size: usize) {
    let mut r = s.open(path).unwrap();
    let mut got = vec![0u8; 3 * MIB / 2 + 3];
    let mut want = vec![0u8; got.len()];
    let mut off = 0;
    loop {
        let n = r.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        pattern(seed, off as u64, &mut want[..n]);
        assert!(
            got[..n] == want[..n],
            "{path}: bytes differ near offset {off}"
        );
        off += n;
    }
    assert_eq!(off, size, "{path}: size");
}

fn streaming_100mib(f: &Fixture) {
    let size = 100 * MIB + 12_345;
    write_pattern(&f.store, "big/object.bin", 7, size);
    assert_eq!(
        f.store.stat("big/object.bin").unwrap().unwrap().size,
        size as u64
    );
    check_pattern(&f.store, "big/object.bin", 7, size);
    f.assert_no_leftovers();
}

fn atomic_on_failure(f: &Fixture) {
    let s = &f.store;
    let no = WriteOptions::default();
    s.write("keep.txt", b"old", no).unwrap();
    // A failure mid-write (here: the writer is dropped, as when the run fails) leaves neither
    // the object nor a temp file nor a multipart upload; an existing object keeps its content.
    for path in ["half.bin", "keep.txt"] {
        let mut w = s.create(path, no).unwrap();
        let chunk = vec![1u8; MIB];
        for _ in 0..12 {
            w.write_all(&chunk).unwrap();
        }
        drop(w);
    }
    assert!(!s.exists("half.bin").unwrap());
    assert_eq!(s.read("keep.txt", 100).unwrap(), b"old");
    // An explicit abort too.
    let mut w = s.create("aborted.bin", no).unwrap();
    w.write_all(&vec![2u8; 11 * MIB]).unwrap();
    w.abort().unwrap();
    assert!(!s.exists("aborted.bin").unwrap());
    assert_eq!(paths(s, ""), ["keep.txt"]);
    f.assert_no_leftovers();
}

fn create_if_absent(f: &Fixture) {
    let s = &f.store;
    let once = WriteOptions { if_absent: true };
    s.write("lock", b"one", once).unwrap();
    let e = s.write("lock", b"two", once).unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    let mut w = s.create("lock", once).unwrap();
    w.write_all(b"three").unwrap();
    let e = w.commit().unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    assert_eq!(s.read("lock", 100).unwrap(), b"one");
    let mut w = s.create("catalog.json", once).unwrap();
    w.write_all(b"{}").unwrap();
    w.commit().unwrap();
    assert_eq!(s.read("catalog.json", 100).unwrap(), b"{}");
    f.assert_no_leftovers();
}

fn reader_lines(f: &Fixture) {
    let s = &f.store;
    s.write("lines.txt", b"one\ntwo\r\nthree", WriteOptions::default())
        .unwrap();
    let r = s.open("lines.txt").unwrap();
    let lines: Vec<String> = r.lines().map(|l| l.unwrap()).collect();
    assert_eq!(lines, ["one", "two", "three"]);
}

macro_rules! conformance {
    ($($backend:ident),*) => {$(
        mod $backend {
            use super::*;
            #[test]
            fn put_get_list_stat_delete_copy() {
                basic(&Fixture::$backend());
            }
            #[test]
            fn streaming_read_and_write_of_100_mib() {
                streaming_100mib(&Fixture::$backend());
            }
            #[test]
            fn failure_mid_write_leaves_nothing() {
                atomic_on_failure(&Fixture::$backend());
            }
            #[test]
            fn create_if_absent_refuses_an_existing_object() {
                create_if_absent(&Fixture::$backend());
            }
            #[test]
            fn readers_are_buffered_streams() {
                reader_lines(&Fixture::$backend());
            }
        }
    )*};
}

conformance!(local, memory, s3);

#[test]
fn copy_across_stores_local_s3_memory_local() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = StoreRegistry::new(config(dir.path()));
    let local = registry.open("data/in", S3Options::default()).unwrap();
    let s3 = registry.open(&server.url("x"), server.options()).unwrap();
    let mem = registry.open("memory://hop", S3Options::default()).unwrap();
    let back = registry.open("data/out", S3Options::default()).unwrap();
    let size = 23 * MIB + 5;
    write_pattern(&local, "src.bin", 3, size);
    assert_eq!(
        storage::copy(&local, "src.bin", &s3, "a/1.bin").unwrap(),
        size as u64
    );
    assert_eq!(
        storage::copy(&s3, "a/1.bin", &mem, "2.bin").unwrap(),
        size as u64
    );
    assert_eq!(
        storage::copy(&mem, "2.bin", &back, "deep/3.bin").unwrap(),
        size as u64
    );
    check_pattern(&back, "deep/3.bin", 3, size);
    // Same bytes on disk, byte for byte.
    let a = std::fs::read(dir.path().join("data/in/src.bin")).unwrap();
    let b = std::fs::read(dir.path().join("data/out/deep/3.bin")).unwrap();
    assert!(a == b);
    // Within one S3 client the copy is server-side; across prefixes of the same client too.
    let s3b = registry.open(&server.url("y"), server.options()).unwrap();
    storage::copy(&s3, "a/1.bin", &s3b, "4.bin").unwrap();
    check_pattern(&s3b, "4.bin", 3, size);
    let e = storage::copy(&mem, "missing", &local, "x").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(server.pending_uploads(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn memory_stores_are_shared_by_name_within_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = StoreRegistry::new(config(dir.path()));
    let a = registry.open("memory://m", S3Options::default()).unwrap();
    a.write("k", b"v", WriteOptions::default()).unwrap();
    let b = registry.open("memory://m", S3Options::default()).unwrap();
    assert_eq!(b.read("k", 10).unwrap(), b"v");
    let other = registry.open("memory://n", S3Options::default()).unwrap();
    assert!(!other.exists("k").unwrap());
    assert_eq!(a.url(), "memory://m");
}

#[test]
fn local_stores_stay_under_the_allowed_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"s").unwrap();
    std::fs::create_dir_all(root.join("data/store")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("data/store/out")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root.join("data/store/leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("data/linkroot")).unwrap();
    let mut cfg = config(root);
    cfg.protected.push(root.join("data/ferry.db"));
    let registry = StoreRegistry::new(cfg);
    let roots = root.join("data").display().to_string();

    for url in [
        "/etc".to_string(),
        "file:///etc".to_string(),
        format!("file://{}", outside.path().display()),
        "data/linkroot".to_string(),
        "elsewhere".to_string(),
    ] {
        let e = registry.open(&url, S3Options::default()).unwrap_err();
        assert!(e.is_denied(), "{url}: {e}");
        assert!(
            e.to_string().contains("outside the allowed roots"),
            "{url}: {e}"
        );
        assert!(e.to_string().contains(&roots), "{url}: {e}");
    }
    for url in ["data/../..", "../x", "file:///tmp/../etc"] {
        let e = registry.open(url, S3Options::default()).unwrap_err();
        assert!(e.to_string().contains(".."), "{url}: {e}");
    }

    let s = registry.open("data/store", S3Options::default()).unwrap();
    for path in ["leak.txt", "out/secret.txt", "out/new.txt"] {
        let e = s.read(path, 100).unwrap_err();
        assert!(e.is_denied(), "{path}: {e}");
        assert!(e.to_string().contains(path), "{path}: {e}");
        assert!(e.to_string().contains(&roots), "{path}: {e}");
        let e = s.write(path, b"x", WriteOptions::default()).unwrap_err();
        assert!(e.is_denied(), "{path}: {e}");
    }
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).unwrap(),
        b"s"
    );
    assert!(!outside.path().join("new.txt").exists());
    // Symlinks that lead outside are not listed.
    assert!(paths(&s, "").is_empty());

    // ferry's own files are off limits even under an allowed root.
    std::fs::write(root.join("data/ferry.db"), b"db").unwrap();
    let data = registry.open("data", S3Options::default()).unwrap();
    let e = data.read("ferry.db", 100).unwrap_err();
    assert!(e.is_denied(), "{e}");
    let e = data
        .write(".ferry/pending/x.json", b"{}", WriteOptions::default())
        .unwrap_err();
    assert!(e.is_denied(), "{e}");
    assert!(!paths(&data, "").contains(&"ferry.db".to_string()));
}

#[test]
fn s3_errors_tell_denied_from_not_found_and_never_show_credentials() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = StoreRegistry::new(config(dir.path()));
    let mut wrong = server.options();
    wrong.secret_access_key = Some(ferry::storage::Secret::new("not-the-secret-key"));
    let s = registry.open(&server.url("p"), wrong).unwrap();
    let e = s.read("x", 10).unwrap_err();
    assert!(e.is_denied(), "{e}");
    let e = s.write("x", b"x", WriteOptions::default()).unwrap_err();
    assert!(e.is_denied(), "{e}");
    let text = e.to_string();
    assert!(!text.contains("not-the-secret-key"), "{text}");
    assert!(!text.contains(&server.access_key), "{text}");
    assert!(text.contains(&server.url("p")), "{text}");

    let good = registry.open(&server.url("p"), server.options()).unwrap();
    let e = good.read("x", 10).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let missing_bucket = registry
        .open("s3://no-such-bucket", server.options())
        .unwrap();
    let e = missing_bucket.read("x", 10).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(format!("{good:?}").find(&server.secret_key).is_none());
}

#[test]
fn unreachable_server_is_reported_as_such() {
    let mut server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let registry = StoreRegistry::new(config(dir.path()));
    let s = registry.open(&server.url("p"), server.options()).unwrap();
    server.stop();
    let e = s.write("x", b"x", WriteOptions::default()).unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert!(e.to_string().contains(&server.endpoint()), "{e}");
    assert!(e.to_string().contains(&server.url("p")), "{e}");
}

#[test]
fn stale_temp_files_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("a/b");
    std::fs::create_dir_all(&folder).unwrap();
    // A pid that cannot be alive: above the kernel's pid_max.
    let stale = folder.join(".x.csv.ferry-tmp-4294967-0-0");
    let mine = folder.join(format!(".y.csv.ferry-tmp-{}-0-0", std::process::id()));
    std::fs::write(&stale, b"partial").unwrap();
    std::fs::write(&mine, b"in progress").unwrap();
    std::fs::write(folder.join("x.csv"), b"keep").unwrap();
    assert_eq!(storage::sweep_temp_files(dir.path()).unwrap(), 1);
    assert!(!stale.exists());
    assert!(mine.exists());
    assert!(folder.join("x.csv").exists());
}

#[test]
fn readers_report_the_store_and_path_on_error() {
    let f = Fixture::local();
    f.store
        .write("r.txt", b"abc", WriteOptions::default())
        .unwrap();
    let mut r = f.store.open("r.txt").unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "abc");
    assert_eq!(r.fill_buf().unwrap(), b"");
    let _ = f.registry.config();
}
