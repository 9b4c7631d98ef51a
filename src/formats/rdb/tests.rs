//! Tests of the RDB reader and writer: pure ones on hand-built and fixture files, and live
//! ones against a real `redis-server`.

use super::input::*;
use super::writer::encode_len;
use super::*;
use crate::formats::row::MemorySink;

const ALL_TYPES_74: &[u8] = include_bytes!("../../../tests/fixtures/rdb/redis_7_4_all_types.rdb");
const INTEGER_KEYS: &[u8] = include_bytes!("../../../tests/fixtures/rdb/integer_keys.rdb");
const LZF_KEY: &[u8] =
    include_bytes!("../../../tests/fixtures/rdb/easily_compressible_string_key.rdb");

/// A length as Redis encodes it.
fn len(n: u64) -> Vec<u8> {
    let mut b = [0u8; 9];
    let used = encode_len(n, &mut b);
    b[..used].to_vec()
}

/// A plain (length-prefixed) string.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = len(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn payload_of(body: &[u8], version: u16) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&dump_footer(body, version));
    p
}

/// A file: header, `records`, EOF and (version 5 and later) the checksum.
fn file(version: u16, records: &[u8]) -> Vec<u8> {
    let mut f = format!("REDIS{version:04}").into_bytes();
    f.extend_from_slice(records);
    f.push(op::EOF);
    if version >= 5 {
        let crc = CRC64.checksum(&f);
        f.extend_from_slice(&crc.to_le_bytes());
    }
    f
}

fn read_all(bytes: &[u8]) -> Result<(Vec<RdbEntry>, RdbSummary), RdbError> {
    let mut reader = RdbReader::new(bytes, "t.rdb")?;
    let mut entries = Vec::new();
    let mut e = RdbEntry::default();
    while reader.next_entry(&mut e)? {
        entries.push(e.clone());
    }
    Ok((entries, reader.summary().clone()))
}

fn err_text(bytes: &[u8]) -> String {
    match read_all(bytes) {
        Ok((entries, _)) => panic!("expected an error, read {} entries", entries.len()),
        Err(e) => e.to_string(),
    }
}

/// One value body (type byte and encoded value) of every type the reader walks.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let id16 = [7u8; 16];
    let stream = |t: u8| {
        let mut b = vec![t];
        b.extend(len(1));
        b.extend(s(&id16));
        b.extend(s(b"listpack bytes"));
        b.extend(cat(&[&len(3), &len(1_700_000_000_000), &len(1)]));
        if t >= 19 {
            b.extend(cat(&[
                &len(1_700_000_000_000),
                &len(0),
                &len(0),
                &len(0),
                &len(3),
            ]));
        }
        b.extend(len(1)); // groups
        b.extend(s(b"group"));
        b.extend(cat(&[&len(1_700_000_000_000), &len(0)]));
        if t >= 19 {
            b.extend(len(1));
        }
        b.extend(len(1)); // pending entries of the group
        b.extend_from_slice(&id16);
        b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        b.extend(len(1));
        b.extend(len(1)); // consumers
        b.extend(s(b"alice"));
        b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        if t >= 21 {
            b.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        }
        b.extend(len(1));
        b.extend_from_slice(&id16);
        b
    };
    let lzf_value = [0xC3, 0x05, 0x0A, 0x00, b'a', 0xE0, 0x00, 0x00];
    vec![
        ("string", cat(&[&[0], &s(b"hello")])),
        ("int string", vec![0, 0xC1, 0x39, 0x30]),
        ("lzf string", cat(&[&[0], &lzf_value])),
        ("big string", cat(&[&[0], &s(&vec![b'x'; 100_000])])),
        ("list", cat(&[&[1], &len(2), &s(b"a"), &[0xC0, 7]])),
        ("set", cat(&[&[2], &len(1), &s(b"m")])),
        (
            "zset text scores",
            cat(&[
                &[3],
                &len(3),
                &s(b"a"),
                &[3],
                b"1.5",
                &s(b"b"),
                &[253],
                &s(b"c"),
                &[255],
            ]),
        ),
        ("hash", cat(&[&[4], &len(1), &s(b"f"), &s(b"v")])),
        (
            "zset2",
            cat(&[&[5], &len(1), &s(b"m"), &1.5f64.to_le_bytes()]),
        ),
        (
            "module2",
            cat(&[
                &[7],
                &len(0x1234_5678_9abc_de00),
                &len(1),
                &len(42),
                &len(2),
                &len(7),
                &len(3),
                &1.5f32.to_le_bytes(),
                &len(4),
                &2.5f64.to_le_bytes(),
                &len(5),
                &s(b"module string"),
                &len(0),
            ]),
        ),
        ("zipmap", cat(&[&[9], &s(b"zipmap")])),
        ("ziplist list", cat(&[&[10], &s(b"ziplist")])),
        ("intset", cat(&[&[11], &s(&[2, 0, 0, 0, 1, 0, 0, 0, 5, 0])])),
        ("zset ziplist", cat(&[&[12], &s(b"zl")])),
        ("hash ziplist", cat(&[&[13], &s(b"zl")])),
        ("quicklist", cat(&[&[14], &len(2), &s(b"zl1"), &s(b"zl2")])),
        ("stream", stream(15)),
        ("hash listpack", cat(&[&[16], &s(b"lp")])),
        ("zset listpack", cat(&[&[17], &s(b"lp")])),
        (
            "quicklist2",
            cat(&[&[18], &len(2), &len(2), &s(b"lp"), &len(1), &s(b"plain")]),
        ),
        ("stream2", stream(19)),
        ("set listpack", cat(&[&[20], &s(b"lp")])),
        ("stream3", stream(21)),
        (
            "hash field expiry",
            cat(&[
                &[24],
                &1_700_000_000_000u64.to_le_bytes(),
                &len(2),
                &len(0),
                &s(b"f1"),
                &s(b"v1"),
                &len(5000),
                &s(b"f2"),
                &s(b"v2"),
            ]),
        ),
        (
            "hash listpack field expiry",
            cat(&[&[25], &1_700_000_000_000u64.to_le_bytes(), &s(b"lp")]),
        ),
    ]
}

#[test]
fn crc64_known_value() {
    assert_eq!(CRC64.checksum(b"123456789"), 0xe9c6d914c4b8d9ca);
    let mut input = Input::new(&b"123456789"[..]);
    for _ in 0..9 {
        assert!(input.byte().is_ok());
    }
    assert_eq!(input.crc_so_far(), 0xe9c6d914c4b8d9ca);
}

#[test]
fn length_encodings() {
    let cases: &[(&[u8], Option<u64>)] = &[
        (&[0x00], Some(0)),
        (&[0x3F], Some(63)),
        (&[0x40, 0x40], Some(64)),
        (&[0x7F, 0xFF], Some(16383)),
        (&[0x80, 0, 0, 0x40, 0], Some(16384)),
        (&[0x80, 0xFF, 0xFF, 0xFF, 0xFF], Some(u64::from(u32::MAX))),
        (&[0x81, 0, 0, 0, 1, 0, 0, 0, 0], Some(1 << 32)),
        (&[0x82], None),
        (&[0xBF], None),
        (&[0xC0], None),
        (&[0x40], None),
        (&[0x80, 0, 0], None),
    ];
    for (bytes, want) in cases {
        let got = Input::new(*bytes).length().ok();
        assert_eq!(got, *want, "{bytes:02x?}");
    }
    for n in [
        0,
        1,
        63,
        64,
        16383,
        16384,
        u64::from(u32::MAX),
        1 << 32,
        u64::MAX,
    ] {
        assert_eq!(Input::new(&len(n)[..]).length().ok(), Some(n), "{n}");
    }
}

#[test]
fn string_encodings_decode() {
    let cases: &[(&[u8], &[u8])] = &[
        (&[0x03, b'a', b'b', b'c'], b"abc"),
        (&[0x00], b""),
        (&[0xC0, 0x7F], b"127"),
        (&[0xC0, 0x80], b"-128"),
        (&[0xC1, 0x2E, 0xFB], b"-1234"),
        (&[0xC2, 0x00, 0xCA, 0x9A, 0x3B], b"1000000000"),
        (&[0xC2, 0xFF, 0xFF, 0xFF, 0xFF], b"-1"),
        (
            &[0xC3, 0x05, 0x0A, 0x00, b'a', 0xE0, 0x00, 0x00],
            b"aaaaaaaaaa",
        ),
    ];
    for (bytes, want) in cases {
        let mut out = Vec::new();
        assert!(
            Input::new(*bytes).read_string(&mut out).is_ok(),
            "{bytes:02x?}"
        );
        assert_eq!(out, *want, "{bytes:02x?}");
    }
    let mut out = Vec::new();
    assert!(Input::new(&[0xC4u8][..]).read_string(&mut out).is_err());
}

#[test]
fn string_payloads_decode_plain_int_and_lzf_values() {
    let payload = |body: &[u8]| {
        let mut p = body.to_vec();
        p.extend_from_slice(&dump_footer(body, 10));
        p
    };
    let mut out = Vec::new();
    assert!(string_payload_value(&payload(b"\x00\x05hello"), &mut out).is_some());
    assert_eq!(out, b"hello");
    assert!(string_payload_value(&payload(b"\x00\xc0\xfe"), &mut out).is_some());
    assert_eq!(out, b"-2");
    assert!(string_payload_value(&payload(b"\x00\xc1\x39\x30"), &mut out).is_some());
    assert_eq!(out, b"12345");
    assert!(string_payload_value(&payload(b"\x00\xc2\x40\xe2\x01\x00"), &mut out).is_some());
    assert_eq!(out, b"123456");
    // LZF: literal "ab" then a back-reference copying 4 bytes from 2 back: "ababab".
    assert!(string_payload_value(&payload(b"\x00\xc3\x05\x06\x01ab\x40\x01"), &mut out).is_some());
    assert_eq!(out, b"ababab");
    // Not a string, a length that does not match, too short.
    assert!(string_payload_value(&payload(b"\x01\x00"), &mut out).is_none());
    assert!(string_payload_value(&payload(b"\x00\x06hello"), &mut out).is_none());
    assert!(string_payload_value(b"\x00\x01", &mut out).is_none());
}

#[test]
fn lzf_decompresses_and_refuses_corrupt_data() {
    let mut out = Vec::new();
    // A literal "ab", then a back-reference of 4 bytes at distance 2: "ababab".
    assert_eq!(
        lzf_decompress(&[0x01, b'a', b'b', 0x40, 0x01], 6, &mut out),
        Ok(())
    );
    assert_eq!(out, b"ababab");
    // A long back-reference (length 7 + 10 + 2 = 19) at distance 1.
    out.clear();
    assert_eq!(
        lzf_decompress(&[0x00, b'z', 0xE0, 10, 0x00], 20, &mut out),
        Ok(())
    );
    assert_eq!(out, vec![b'z'; 20]);
    let corrupt: &[(&[u8], u64, &str)] = &[
        (&[0x02, b'a'], 3, "literal run"),
        (&[0x00, b'a', 0x20], 4, "back-reference"),
        (&[0x00, b'a', 0x20, 0x01], 4, "before the start"),
        (&[0x20, 0x00], 3, "before the start"),
        (
            &[0x00, b'a', 0xE0, 0xFF, 0x00],
            10,
            "more than the declared",
        ),
        (&[0x01, b'a', b'b'], 1, "more than the declared"),
        (
            &[0x01, b'a', b'b'],
            3,
            "decompresses to 2 bytes, the file declares 3",
        ),
    ];
    for (data, declared, want) in corrupt {
        let mut out = Vec::new();
        let err = lzf_decompress(data, *declared, &mut out).expect_err("corrupt");
        assert!(err.contains(want), "{data:02x?}: {err}");
    }
    // The reader reports it with the offset of the string.
    let key = [0xC3, 0x02, 0x05, 0x20, 0x00];
    let f = file(10, &cat(&[&[0], &key, &s(b"v")]));
    let msg = err_text(&f);
    assert!(
        msg.starts_with("t.rdb: byte 10: LZF back-reference"),
        "{msg}"
    );
}

#[test]
fn every_value_type_goes_through_the_writer_and_reader() {
    let bodies = bodies();
    let mut w = RdbWriter::new(Vec::new(), "out.rdb");
    for (i, (name, body)) in bodies.iter().enumerate() {
        let db = if i % 3 == 2 { 3 } else { 0 };
        let expire = (i % 2 == 0).then_some(1_700_000_000_000 + i as i64);
        w.write_entry(db, name.as_bytes(), expire, &payload_of(body, 12))
            .unwrap();
    }
    let out = w.finish().unwrap();
    let (entries, summary) = read_all(&out).unwrap();
    assert_eq!(entries.len(), bodies.len());
    for (i, (e, (name, body))) in entries.iter().zip(&bodies).enumerate() {
        assert_eq!(e.key, name.as_bytes());
        assert_eq!(e.db, if i % 3 == 2 { 3 } else { 0 }, "{name}");
        assert_eq!(e.type_byte, body[0], "{name}");
        assert_eq!(e.payload, payload_of(body, 12), "{name}");
        let expire = (i % 2 == 0).then_some(1_700_000_000_000 + i as i64);
        assert_eq!(e.expire_at_ms, expire, "{name}");
        assert_eq!(verify_payload(&e.payload).unwrap(), 12);
    }
    assert_eq!(summary.version, 12);
    assert_eq!(summary.keys, bodies.len() as u64);
    assert_eq!(summary.checksum, Checksum::Verified);
    assert_eq!(summary.bytes, out.len() as u64);
    assert_eq!(
        summary.aux[0],
        ("ferry-ver".into(), env!("CARGO_PKG_VERSION").into())
    );
    assert_eq!(summary.aux[1].0, "ctime");
    assert_eq!(check(&out[..], "out.rdb").unwrap(), summary);
}

#[test]
fn every_opcode_is_read() {
    let module_aux = cat(&[
        &[op::MODULE_AUX],
        &len(99),
        &len(2),
        &len(2),
        &len(5),
        &s(b"x"),
        &len(0),
    ]);
    let records = cat(&[
        &[op::AUX],
        &s(b"redis-ver"),
        &s(b"7.4.0"),
        &[op::AUX],
        &s(b"redis-bits"),
        &[0xC0, 64],
        &module_aux,
        &[op::FUNCTION2],
        &s(b"#!lua name=lib\n..."),
        &[op::SELECTDB],
        &len(2),
        &[op::RESIZEDB],
        &len(2),
        &len(1),
        &[op::SLOT_INFO],
        &len(5),
        &len(2),
        &len(1),
        &[op::EXPIRETIME],
        &1_700_000_000i32.to_le_bytes(),
        &[op::IDLE],
        &len(1000),
        &[0],
        &s(b"a"),
        &s(b"1"),
        &[op::FREQ, 5],
        &[0],
        &s(b"b"),
        &s(b"2"),
    ]);
    let (entries, summary) = read_all(&file(11, &records)).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].db, &entries[0].key[..]), (2, &b"a"[..]));
    assert_eq!(entries[0].expire_at_ms, Some(1_700_000_000_000));
    assert_eq!(
        entries[1].expire_at_ms, None,
        "an expiry applies to one key only"
    );
    assert_eq!(
        summary.aux,
        vec![
            ("redis-ver".into(), "7.4.0".into()),
            ("redis-bits".into(), "64".into())
        ]
    );
    assert_eq!(summary.functions, 1);
    assert_eq!(summary.expires, 1);
    assert_eq!(summary.dbs, BTreeMap::from([(2, 2)]));
}

#[test]
fn refusals_say_what_is_not_supported() {
    let cases: &[(Vec<u8>, &str)] = &[
        (
            file(10, &cat(&[&[26], &s(b"k"), &s(b"v")])),
            "t.rdb: byte 9: unsupported value type 26 (written by a newer Redis, or the file is corrupt)",
        ),
        (
            file(10, &cat(&[&[6], &s(b"k"), &s(b"v")])),
            "t.rdb: byte 12 (key \"k\"): module value in the pre-release format (type 6) is not supported",
        ),
        (
            file(12, &cat(&[&[23], &s(b"k"), &s(b"v")])),
            "t.rdb: byte 12 (key \"k\"): hash with field expiry in the format of Redis 7.4 release candidates (type 23) is not supported",
        ),
        (
            file(10, &[op::FUNCTION_PRE_GA]),
            "t.rdb: byte 9: functions in the format of Redis 7.0 release candidates (opcode 0xF6) are not supported",
        ),
        (
            file(10, &cat(&[&[7], &s(b"k"), &len(1), &len(9)])),
            "t.rdb: byte 13 (key \"k\"): unknown module opcode 9",
        ),
        (
            file(
                10,
                &cat(&[&[op::MODULE_AUX], &len(1), &len(1), &len(0), &len(0)]),
            ),
            "t.rdb: byte 11: bad `when` opcode 1 in module data (MODULE_AUX)",
        ),
        (
            file(10, &cat(&[&[0], &[0x83]])),
            "t.rdb: byte 10: unknown length encoding 0x83",
        ),
        (
            file(10, &cat(&[&[4], &s(b"k"), &[0xC0, 1]])),
            "t.rdb: byte 12 (key \"k\"): expected a length, found the string encoding 0xc0",
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(err_text(bytes), *want);
    }
}

#[test]
fn truncated_files_give_errors_at_every_offset() {
    let mut w = RdbWriter::new(Vec::new(), "out.rdb");
    for (name, body) in bodies().into_iter().filter(|(n, _)| *n != "big string") {
        w.write_entry(0, name.as_bytes(), Some(1), &payload_of(&body, 12))
            .unwrap();
    }
    let written = w.finish().unwrap();
    for whole in [&written[..], ALL_TYPES_74, INTEGER_KEYS, LZF_KEY] {
        assert!(read_all(whole).is_ok());
        for n in 0..whole.len() {
            let cut = &whole[..n];
            assert!(
                read_all(cut).is_err(),
                "a file cut at {n} of {} reads",
                whole.len()
            );
            assert!(check(cut, "t.rdb").is_err(), "{n}");
        }
    }
    let msg = err_text(&ALL_TYPES_74[..ALL_TYPES_74.len() - 1]);
    assert!(
        msg.contains("unexpected end of file inside the checksum"),
        "{msg}"
    );
    let msg = err_text(&ALL_TYPES_74[..ALL_TYPES_74.len() - 9]);
    assert!(
        msg.contains("before the end-of-file marker (the file is truncated)"),
        "{msg}"
    );
    let f = file(
        10,
        &cat(&[&[4], &s(b"user:1"), &len(2), &s(b"f"), &s(b"v"), &s(b"g")]),
    );
    let msg = err_text(&f[..f.len() - 9]);
    assert_eq!(
        msg,
        format!(
            "t.rdb: byte {} (key \"user:1\"): unexpected end of file inside a hash value",
            f.len() - 9
        )
    );
}

#[test]
fn a_huge_length_in_a_corrupt_file_is_an_end_of_file_not_an_allocation() {
    let huge = cat(&[&[0x81], &(u64::MAX / 2).to_be_bytes()]);
    for records in [
        cat(&[&[0], &huge, b"abc"]),
        cat(&[&[0], &s(b"k"), &huge, b"abc"]),
        cat(&[&[0], &[0xC3], &huge, &huge, b"abc"]),
        cat(&[&[0], &[0xC3], &len(3), &huge, b"abc"]),
        cat(&[&[4], &s(b"k"), &huge, &s(b"f")]),
        // A stream whose consumer claims a huge number of pending IDs.
        cat(&[
            &[21],
            &s(b"k"),
            &[0; 9],
            &len(1),
            &s(b"group"),
            &[0; 3],
            &len(1),
            &s(b"consumer"),
            &[0; 16],
            &huge,
        ]),
    ] {
        // No end-of-file marker: the huge length runs to the end of the input.
        let msg = err_text(&cat(&[b"REDIS0010", &records]));
        // Either a cut file or, when the bytes after the length happen to end like an RDB
        // file, a corrupt one: never an allocation of the length.
        assert!(
            msg.contains("unexpected end of file")
                || msg.contains("LZF")
                || msg.contains("corrupt data"),
            "{msg}"
        );
    }
}

#[test]
fn a_changed_byte_is_always_an_error() {
    let mut w = RdbWriter::new(Vec::new(), "out.rdb");
    for (name, body) in bodies().into_iter().filter(|(n, _)| *n != "big string") {
        w.write_entry(1, name.as_bytes(), None, &payload_of(&body, 10))
            .unwrap();
    }
    let written = w.finish().unwrap();
    for whole in [&written[..], ALL_TYPES_74] {
        for i in 0..whole.len() {
            let mut bytes = whole.to_vec();
            bytes[i] ^= 0xFF;
            assert!(check(&bytes[..], "t.rdb").is_err(), "byte {i} changed");
        }
    }
    // A changed byte inside a string value is caught by the checksum.
    let f = file(10, &cat(&[&[0], &s(b"k"), &s(b"some value")]));
    let mut bytes = f.clone();
    bytes[15] ^= 1;
    let msg = err_text(&bytes);
    let re = regex::Regex::new(
        r"^t\.rdb: checksum mismatch: file says 0x[0-9a-f]{16}, content gives 0x[0-9a-f]{16} \(the file is corrupt or truncated\)$",
    )
    .unwrap();
    assert!(re.is_match(&msg), "{msg}");

    // A changed length byte makes the value run past the end of the file: reported as a
    // corruption at the record, not as a cut file, because the file still ends with its
    // end-of-file marker and a checksum that no longer matches. A file that really is cut
    // is still reported as one.
    for version in [10, 11, 12] {
        let f = file(version, &cat(&[&[0], &s(b"k"), &s(b"some value")]));
        let mut bytes = f.clone();
        assert_eq!(bytes[12], 10, "the length byte of the value");
        bytes[12] = 0x3F;
        assert_eq!(
            err_text(&bytes),
            format!(
                "t.rdb: byte 9 (key \"k\"): corrupt data inside a string value: it runs past the end of the file (byte {}), and the file's checksum does not match its content: a changed byte, not a cut file",
                f.len()
            )
        );
        let cut = err_text(&f[..f.len() - 12]);
        assert!(cut.contains("unexpected end of file"), "{cut}");
    }
}

#[test]
fn headers_are_checked() {
    let not_rdb = "t.rdb: not an RDB file (expected \"REDIS\" and a version at the start)";
    for bytes in [
        &b""[..],
        b"REDIS",
        b"REDIS001",
        b"redis0010",
        b"REDIS00x0\xff",
        b"{\"json\": 1}",
    ] {
        assert_eq!(
            RdbReader::new(bytes, "t.rdb").err().unwrap().to_string(),
            not_rdb
        );
    }
    for (v, ok) in [
        (0, false),
        (1, true),
        (5, true),
        (12, true),
        (13, false),
        (9999, false),
    ] {
        let f = file(v, &[]);
        match read_all(&f) {
            Ok((entries, summary)) => {
                assert!(ok, "{v}");
                assert!(entries.is_empty());
                assert_eq!(summary.version, v);
                let want = if v >= 5 {
                    Checksum::Verified
                } else {
                    Checksum::Absent
                };
                assert_eq!(summary.checksum, want);
            }
            Err(e) => {
                assert!(!ok, "{v}: {e}");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "t.rdb: RDB version {v} is not supported (versions 1 to 12 are, as written by Redis up to 7.4)"
                    )
                );
            }
        }
    }
}

#[test]
fn the_end_of_the_file_is_checked() {
    let mut f = file(10, &cat(&[&[0], &s(b"k"), &s(b"v")]));
    // A stored checksum of 0: written with `rdbchecksum no`.
    let n = f.len();
    f[n - 8..].fill(0);
    assert_eq!(check(&f[..], "t.rdb").unwrap().checksum, Checksum::Disabled);
    f.push(b'\n');
    assert_eq!(
        err_text(&f),
        format!(
            "t.rdb: byte {n}: data after the end of the RDB file (after the end-of-file marker and checksum)"
        )
    );
    // Reading on after the end or after an error.
    let good = file(10, &[]);
    let mut r = RdbReader::new(&good[..], "t.rdb").unwrap();
    let mut e = RdbEntry::default();
    assert!(!r.next_entry(&mut e).unwrap());
    assert!(!r.next_entry(&mut e).unwrap());
    let mut r = RdbReader::new(&f[..], "t.rdb").unwrap();
    assert!(r.next_entry(&mut e).unwrap());
    assert!(r.next_entry(&mut e).is_err());
    assert!(r.next_entry(&mut e).is_err());
}

#[test]
fn fixtures_are_read() {
    let (entries, summary) = read_all(ALL_TYPES_74).unwrap();
    assert_eq!(summary.version, 12);
    assert_eq!(summary.checksum, Checksum::Verified);
    assert_eq!(summary.functions, 1);
    assert_eq!(summary.keys, entries.len() as u64);
    assert!(summary.aux.contains(&("redis-ver".into(), "7.4.1".into())));
    let types: std::collections::BTreeSet<u8> = entries.iter().map(|e| e.type_byte).collect();
    for t in [0, 17, 18, 20, 21, 25] {
        assert!(types.contains(&t), "type {t} not in {types:?}");
    }
    for e in &entries {
        assert_eq!(verify_payload(&e.payload).unwrap(), 12);
        assert_eq!(e.payload[0], e.type_byte);
    }

    let (entries, summary) = read_all(INTEGER_KEYS).unwrap();
    assert_eq!(summary.checksum, Checksum::Absent);
    let mut keys: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.key.clone()).unwrap())
        .collect();
    keys.sort();
    // As the fixture's origin lists them (redis-rdb-tools' `integer_keys.json`).
    assert_eq!(
        keys,
        ["-123", "-183358245", "-29477", "125", "183358245", "43947"]
    );

    let (entries, _) = read_all(LZF_KEY).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key, vec![b'a'; 200]);
    assert_eq!(
        entries[0].payload,
        payload_of(
            &cat(&[&[0], &s(b"Key that redis should compress easily")]),
            3
        )
    );
}

#[test]
fn payloads_are_verified() {
    let p = payload_of(&cat(&[&[0], &s(b"v")]), 10);
    assert_eq!(verify_payload(&p).unwrap(), 10);
    assert_eq!(
        verify_payload(&p[..10]).unwrap_err().to_string(),
        "invalid DUMP payload: 10 bytes; a payload has at least 11 (a type byte, a value, a 2-byte version and an 8-byte checksum)"
    );
    let mut bad = p.clone();
    bad[1] ^= 1;
    assert!(
        verify_payload(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("invalid DUMP payload: checksum mismatch")
    );
}

#[test]
fn the_writer_checks_its_entries() {
    let v10 = payload_of(&cat(&[&[0], &s(b"v")]), 10);
    let v11 = payload_of(&cat(&[&[0], &s(b"v")]), 11);
    let v13 = payload_of(&cat(&[&[0], &s(b"v")]), 13);
    let odd = payload_of(&cat(&[&[8], &s(b"v")]), 10);
    let mut w = RdbWriter::new(Vec::new(), "out.rdb");
    w.write_entry(0, b"a", None, &v10).unwrap();
    assert_eq!(w.version(), Some(10));
    assert_eq!(
        w.write_entry(0, b"b", None, &v11).unwrap_err().to_string(),
        "out.rdb: key \"b\": the payload is of RDB version 11, newer than the file's version 10 (the first entry's); write the newest payloads first"
    );
    assert_eq!(
        w.write_entry(0, b"c", None, &v13).unwrap_err().to_string(),
        "out.rdb: key \"c\": the payload is of RDB version 13; versions 1 to 12 can be written"
    );
    assert_eq!(
        w.write_entry(0, b"d", None, &odd).unwrap_err().to_string(),
        "out.rdb: key \"d\": the payload's value type 8 is not supported"
    );
    let mut broken = v10.clone();
    broken[2] ^= 1;
    assert!(
        w.write_entry(0, b"\xff\x00", None, &broken)
            .unwrap_err()
            .to_string()
            .starts_with("out.rdb: key \"\\xff\\x00\": invalid DUMP payload: checksum mismatch")
    );
    // Older payloads go in a newer file; a database may come back.
    let mut w = RdbWriter::new(Vec::new(), "out.rdb");
    w.write_entry(0, b"a", None, &v11).unwrap();
    w.write_entry(2, b"b", None, &v10).unwrap();
    w.write_entry(0, b"c", None, &v10).unwrap();
    assert_eq!(w.entries(), 3);
    let (entries, _) = read_all(&w.finish().unwrap()).unwrap();
    let got: Vec<(u64, &[u8])> = entries.iter().map(|e| (e.db, &e.key[..])).collect();
    assert_eq!(got, [(0, &b"a"[..]), (2, b"b"), (0, b"c")]);
    // Payloads come back with the file's version.
    assert_eq!(entries[1].payload, payload_of(&cat(&[&[0], &s(b"v")]), 11));
    // An empty file is of version 10.
    let empty = RdbWriter::new(Vec::new(), "out.rdb").finish().unwrap();
    let summary = check(&empty[..], "e.rdb").unwrap();
    assert_eq!((summary.version, summary.keys), (10, 0));
    // Old versions: seconds for expiry, no AUX, no checksum.
    let v2 = payload_of(&cat(&[&[0], &s(b"v")]), 2);
    let mut w = RdbWriter::new(Vec::new(), "old.rdb");
    w.write_entry(0, b"a", Some(1_700_000_000_001), &v2)
        .unwrap();
    let (entries, summary) = read_all(&w.finish().unwrap()).unwrap();
    assert_eq!(entries[0].expire_at_ms, Some(1_700_000_001_000));
    assert_eq!(summary.checksum, Checksum::Absent);
    assert!(summary.aux.is_empty());
}

#[test]
fn errors_name_the_key_readably() {
    assert_eq!(quote_key(b"user:1"), "\"user:1\"");
    assert_eq!(
        quote_key("caf\u{e9} \"q\"".as_bytes()),
        "\"caf\u{e9} \\\"q\\\"\""
    );
    assert_eq!(quote_key(b"\x00a'\xff"), "\"\\x00a'\\xff\"");
    let long = "k".repeat(100);
    assert_eq!(
        quote_key(long.as_bytes()),
        format!("\"{}\"…", "k".repeat(64))
    );
    let e = FormatError::from(RdbError::Data {
        name: "dump.rdb".into(),
        offset: 1234,
        key: Some(b"user:1".to_vec()),
        message: "unexpected end of file inside a hash value".into(),
    });
    assert!(matches!(&e, FormatError::Data { at, .. } if at.file == "dump.rdb"));
    assert_eq!(
        e.to_string(),
        "dump.rdb: byte 1234 (key \"user:1\"): unexpected end of file inside a hash value"
    );
}

/// A file of three entries, and the entries.
fn entries_file() -> (Vec<u8>, Vec<RdbEntry>) {
    let entry = |db, key: &[u8], expire_at_ms, body: Vec<u8>| RdbEntry {
        db,
        key: key.to_vec(),
        type_byte: body[0],
        expire_at_ms,
        payload: payload_of(&body, 10),
    };
    let entries = vec![
        entry(
            0,
            b"text",
            Some(now_ms() + 3_600_000),
            cat(&[&[0], &s(b"v")]),
        ),
        entry(0, b"\xffbin", None, cat(&[&[2], &len(1), &s(b"m")])),
        entry(4, b"four", Some(1_000), cat(&[&[17], &s(b"lp")])),
    ];
    let mut w = RdbWriter::new(Vec::new(), "rows.rdb");
    for e in &entries {
        w.write_entry(e.db, &e.key, e.expire_at_ms, &e.payload)
            .unwrap();
    }
    (w.finish().unwrap(), entries)
}

#[test]
fn rows_come_out_typed() {
    let (bytes, rows) = entries_file();
    let mut src = RdbSource::new(&bytes[..], "rows.rdb", None).unwrap();
    assert_eq!(src.columns(), COLUMNS);
    let mut sink = MemorySink::default();
    crate::formats::pipe(&mut src, &mut sink).unwrap();
    assert_eq!(sink.rows.len(), 3);
    let r = &sink.rows;
    assert_eq!(r[0][0], Value::Int(0));
    assert_eq!(r[0][1], Value::Text("text".into()));
    assert_eq!(r[0][2], Value::Text("string".into()));
    assert!(matches!(r[0][3], Value::Int(ttl) if (3_590_000..=3_600_000).contains(&ttl)));
    assert_eq!(r[0][4], Value::Int(rows[0].expire_at_ms.unwrap()));
    assert_eq!(r[0][5], Value::Bytes(rows[0].payload.clone()));
    assert_eq!(r[1][1], Value::Bytes(b"\xffbin".to_vec()));
    assert_eq!(r[1][2], Value::Text("set".into()));
    assert_eq!((&r[1][3], &r[1][4]), (&Value::Null, &Value::Null));
    assert_eq!(r[2][0], Value::Int(4));
    assert!(
        matches!(r[2][3], Value::Int(ttl) if ttl < 0),
        "already expired"
    );
    assert_eq!(r[2][5], Value::Bytes(rows[2].payload.clone()));
    assert_eq!(src.summary().checksum, Checksum::Verified);

    let mut src = RdbSource::new(&bytes[..], "rows.rdb", Some(4)).unwrap();
    let mut row = Vec::new();
    assert!(src.next_row(&mut row).unwrap());
    assert_eq!(row[1], Value::Text("four".into()));
    assert!(!src.next_row(&mut row).unwrap());
    assert_eq!(src.summary().keys, 3);

    let e = RdbSource::new(&b"nope"[..], "x.rdb", None).err().unwrap();
    assert!(matches!(e, FormatError::Data { .. }), "{e}");
}

#[test]
fn rows_go_back_into_a_file() {
    let (bytes, _) = entries_file();
    let mut src = RdbSource::new(&bytes[..], "rows.rdb", None).unwrap();
    let mut sink = RdbSink::new(Vec::new(), "copy.rdb");
    crate::formats::pipe(&mut src, &mut sink).unwrap();
    sink.finish().unwrap();
    sink.finish().unwrap();
    let copy = sink.into_inner().unwrap();
    let (a, _) = read_all(&bytes).unwrap();
    let (b, _) = read_all(&copy).unwrap();
    assert_eq!(a, b);

    // Only key and payload are needed; ttl counts from now; text is accepted.
    let p = payload_of(&cat(&[&[0], &s(b"v")]), 10);
    let mut sink = RdbSink::new(Vec::new(), "min.rdb");
    sink.begin(&["payload".into(), "key".into(), "ttl".into(), "db".into()])
        .unwrap();
    sink.write_row(&[
        Value::Bytes(p.clone()),
        Value::Text("k".into()),
        Value::Int(60_000),
        Value::Null,
    ])
    .unwrap();
    sink.write_row(&[
        Value::Bytes(p.clone()),
        Value::Bytes(b"j".to_vec()),
        Value::Null,
        Value::Int(2),
    ])
    .unwrap();
    sink.finish().unwrap();
    let (entries, _) = read_all(&sink.into_inner().unwrap()).unwrap();
    assert_eq!((entries[0].db, entries[1].db), (0, 2));
    let left = entries[0].expire_at_ms.unwrap() - now_ms();
    assert!((59_000..=60_000).contains(&left), "{left}");
    assert_eq!(entries[1].expire_at_ms, None);

    let mut sink = RdbSink::new(Vec::new(), "bad.rdb");
    assert_eq!(
        sink.begin(&["db".into(), "key".into(), "value".into()])
            .unwrap_err()
            .to_string(),
        "bad.rdb: an RDB output needs a `payload` column (it takes `key`, `payload` with DUMP payloads, and optionally `db`, `expire_at` or `ttl`); the columns are: db, key, value"
    );
    sink.begin(&["key".into(), "payload".into(), "db".into()])
        .unwrap();
    assert_eq!(
        sink.write_row(&[
            Value::Text("k".into()),
            Value::Bytes(p.clone()),
            Value::Int(-1)
        ])
        .unwrap_err()
        .to_string(),
        "bad.rdb, field 3 (db): row 1: database number -1 is negative"
    );
    assert_eq!(
        sink.write_row(&[Value::Int(1), Value::Bytes(p.clone()), Value::Null])
            .unwrap_err()
            .to_string(),
        "bad.rdb, field 1 (key): row 2: expected text or bytes, found integer"
    );
    assert_eq!(
        sink.write_row(&[
            Value::Text("k".into()),
            Value::Bytes(p[..5].to_vec()),
            Value::Null
        ])
        .unwrap_err()
        .to_string(),
        "bad.rdb: key \"k\": invalid DUMP payload: 5 bytes; a payload has at least 11 (a type byte, a value, a 2-byte version and an 8-byte checksum)"
    );
}

/// Tests against real `redis-server` instances (Debian's 7.0, installed by
/// `tests/setup.sh`), each on a free port with its own folder.
mod live {
    use super::*;
    use std::net::TcpListener;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A `redis-server` started for a test, killed when dropped.
    struct Server {
        child: Child,
        port: u16,
    }

    impl Server {
        /// Starts `redis-server` with `dir/dump.rdb` as its RDB file (loaded if present)
        /// and waits until it answers PING.
        fn start(dir: &Path, extra: &[&str]) -> Server {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = dir.join("redis.log");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(&log)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start redis-server ({e}); the RDB tests need Debian's redis-server: run tests/setup.sh"
                    )
                });
            let mut server = Server { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if server.try_ping() {
                    return server;
                }
                if let Ok(Some(status)) = server.child.try_wait() {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!("redis-server exited ({status}):\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not answer PING in 10 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn try_ping(&self) -> bool {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            else {
                return false;
            };
            client.get_connection().is_ok_and(|mut con| {
                redis::cmd("PING")
                    .query::<String>(&mut con)
                    .is_ok_and(|p| p == "PONG")
            })
        }

        fn connect(&self) -> redis::Connection {
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
                .and_then(|c| c.get_connection())
                .expect("connect to redis-server")
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn run<T: redis::FromRedisValue>(con: &mut redis::Connection, cmd: &mut redis::Cmd) -> T {
        cmd.query(con).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    fn select(con: &mut redis::Connection, db: u64) {
        run::<()>(con, redis::cmd("SELECT").arg(db));
    }

    /// Keys of every type in small and large encodings, in databases 0 and 3, some with
    /// an expiry, and a function library.
    fn populate(con: &mut redis::Connection) {
        let text = "the quick brown fox jumps over the lazy dog; ".repeat(4);
        let binary: Vec<u8> = (0..=255u8).rev().collect();
        select(con, 0);
        run::<()>(con, redis::cmd("SET").arg("str:short").arg("hello"));
        run::<()>(con, redis::cmd("SET").arg("str:int").arg("12345"));
        run::<()>(con, redis::cmd("SET").arg("str:text").arg(&text));
        run::<()>(con, redis::cmd("SET").arg("str:big").arg(text.repeat(500)));
        run::<()>(
            con,
            redis::cmd("SET").arg(&b"bin:\x00\xff"[..]).arg(&binary),
        );
        run::<()>(con, redis::cmd("SET").arg("987654").arg("an integer key"));
        run::<()>(
            con,
            redis::cmd("SET")
                .arg(format!("long:{}", "abc".repeat(30)))
                .arg("a compressed key"),
        );
        run::<()>(
            con,
            redis::cmd("RPUSH")
                .arg("list:small")
                .arg(&["a", "b", "c", "1", "2"]),
        );
        let many: Vec<String> = (0..1000).map(|i| format!("element {i}")).collect();
        run::<()>(con, redis::cmd("RPUSH").arg("list:big").arg(&many));
        run::<()>(
            con,
            redis::cmd("SADD")
                .arg("set:ints")
                .arg(&[1, 2, 3, 100_000, -5]),
        );
        run::<()>(
            con,
            redis::cmd("SADD").arg("set:small").arg(&["x", "y", "z"]),
        );
        run::<()>(con, redis::cmd("SADD").arg("set:big").arg(&many));
        run::<()>(
            con,
            redis::cmd("ZADD")
                .arg("zset:small")
                .arg(&["1", "a", "2.5", "b", "-inf", "c"]),
        );
        let mut zadd = redis::cmd("ZADD");
        zadd.arg("zset:big");
        for i in 0..498 {
            zadd.arg(f64::from(i) * 0.37 - 50.0)
                .arg(format!("member {i}"));
        }
        zadd.arg("inf").arg("top").arg("-inf").arg("bottom");
        run::<()>(con, &mut zadd);
        run::<()>(
            con,
            redis::cmd("HSET")
                .arg("hash:small")
                .arg(&["f1", "v1", "f2", "2"]),
        );
        let mut hset = redis::cmd("HSET");
        hset.arg("hash:big");
        for i in 0..1000 {
            hset.arg(format!("field {i}")).arg(format!("value {i}"));
        }
        run::<()>(con, &mut hset);
        for i in 0..5 {
            run::<String>(
                con,
                redis::cmd("XADD").arg("stream").arg("*").arg("n").arg(i),
            );
        }
        run::<()>(
            con,
            redis::cmd("XGROUP").arg(&["CREATE", "stream", "group", "0"]),
        );
        run::<redis::Value>(
            con,
            redis::cmd("XREADGROUP").arg(&[
                "GROUP", "group", "alice", "COUNT", "2", "STREAMS", "stream", ">",
            ]),
        );
        for (key, ms) in [
            ("str:short", 3_600_000),
            ("hash:big", 7_200_000),
            ("list:small", 1_800_000),
        ] {
            run::<()>(con, redis::cmd("PEXPIRE").arg(key).arg(ms));
        }
        run::<()>(
            con,
            redis::cmd("FUNCTION").arg("LOAD").arg(
                "#!lua name=ferrylib\nredis.register_function('ferry_noop', function() return 1 end)",
            ),
        );
        select(con, 3);
        run::<()>(con, redis::cmd("SET").arg("db3:str").arg("three"));
        run::<()>(con, redis::cmd("HSET").arg("db3:hash").arg(&["a", "b"]));
        run::<()>(con, redis::cmd("PEXPIRE").arg("db3:str").arg(5_000_000));
    }

    /// Checks `entries` against a live server: the same number of keys per database, and
    /// for each key the server's DUMP equal to the payload (with `exact` false, hash-table
    /// sets and hashes may list their elements in another order) and its expiry (±1 s).
    fn assert_server_has(
        con: &mut redis::Connection,
        entries: &[RdbEntry],
        exact: bool,
        what: &str,
    ) {
        let mut per_db = BTreeMap::<u64, u64>::new();
        for e in entries {
            *per_db.entry(e.db).or_default() += 1;
        }
        for db in 0..16 {
            select(con, db);
            let size: u64 = run(con, &mut redis::cmd("DBSIZE"));
            assert_eq!(
                size,
                per_db.get(&db).copied().unwrap_or(0),
                "{what}: DBSIZE of db {db}"
            );
        }
        for e in entries {
            select(con, e.db);
            let dump: Vec<u8> = run(con, redis::cmd("DUMP").arg(&e.key));
            if exact {
                assert_eq!(dump, e.payload, "{what}: DUMP of {}", quote_key(&e.key));
            } else if dump != e.payload {
                // A set or hash in a hash table is dumped in the table's order, which
                // depends on the process's hash seed: another server holding the same
                // elements may dump them in another order.
                let same = unordered(&dump).is_some_and(|d| Some(d) == unordered(&e.payload));
                assert!(
                    same,
                    "{what}: DUMP of {}: {dump:?} vs {:?}",
                    quote_key(&e.key),
                    e.payload
                );
            }
            let at: i64 = run(con, redis::cmd("PEXPIRETIME").arg(&e.key));
            match e.expire_at_ms {
                Some(want) => assert!(
                    (at - want).abs() <= 1000,
                    "{what}: expiry of {}: {at} vs {want}",
                    quote_key(&e.key)
                ),
                None => assert_eq!(at, -1, "{what}: {} has an expiry", quote_key(&e.key)),
            }
        }
    }

    /// A set member (one string) or a hash field and its value (two).
    type Item = Vec<Vec<u8>>;

    /// The elements (pairs for a hash) of a hash-table set or hash payload, sorted, with
    /// its type byte and version; `None` for other payloads.
    fn unordered(payload: &[u8]) -> Option<(u8, u16, Vec<Item>)> {
        let version = verify_payload(payload).ok()?;
        let per_item = match payload[0] {
            2 => 1,
            4 => 2,
            _ => return None,
        };
        let mut input = Input::new(&payload[1..payload.len() - FOOTER_LEN]);
        let n = input.length().ok()?;
        let mut items = Vec::new();
        for _ in 0..n {
            let mut item = Vec::new();
            for _ in 0..per_item {
                let mut s = Vec::new();
                input.read_string(&mut s).ok()?;
                item.push(s);
            }
            items.push(item);
        }
        input.byte().is_err().then_some(())?;
        items.sort();
        Some((payload[0], version, items))
    }

    #[test]
    fn a_saved_file_reads_back_as_the_server_dumps_restores_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let source = Server::start(dir.path(), &[]);
        let mut con = source.connect();
        populate(&mut con);
        run::<()>(&mut con, &mut redis::cmd("SAVE"));
        let bytes = std::fs::read(dir.path().join("dump.rdb")).unwrap();
        let (entries, summary) = read_all(&bytes).unwrap();

        assert_eq!(summary.version, 10, "Redis 7.0 writes RDB version 10");
        assert_eq!(summary.checksum, Checksum::Verified);
        assert_eq!(summary.functions, 1);
        assert_eq!(summary.expires, 4);
        assert!(
            summary
                .aux
                .iter()
                .any(|(k, v)| k == "redis-ver" && v.starts_with("7."))
        );
        let types: std::collections::BTreeSet<u8> = entries.iter().map(|e| e.type_byte).collect();
        for t in [0, 2, 4, 5, 11, 16, 17, 18, 19] {
            assert!(types.contains(&t), "type {t} not among {types:?}");
        }
        let keys: Vec<&[u8]> = entries.iter().map(|e| &e.key[..]).collect();
        for key in [
            &b"987654"[..],
            b"bin:\x00\xff",
            format!("long:{}", "abc".repeat(30)).as_bytes(),
        ] {
            assert!(keys.contains(&key), "{}", quote_key(key));
        }
        assert_server_has(&mut con, &entries, true, "the saved server");

        // RESTORE into a second server, with the absolute expiry.
        let dir2 = tempfile::tempdir().unwrap();
        let target = Server::start(dir2.path(), &[]);
        let mut con2 = target.connect();
        for e in &entries {
            select(&mut con2, e.db);
            let mut restore = redis::cmd("RESTORE");
            restore
                .arg(&e.key)
                .arg(e.expire_at_ms.unwrap_or(0))
                .arg(&e.payload);
            if e.expire_at_ms.is_some() {
                restore.arg("ABSTTL");
            }
            run::<()>(&mut con2, &mut restore);
        }
        assert_server_has(&mut con2, &entries, false, "the restored server");

        // Written by RdbWriter and loaded at startup, with a database that comes back.
        let mut order = entries.clone();
        let first = order.remove(0);
        order.push(first);
        let n = order.len();
        assert_eq!(
            (order[n - 2].db, order[n - 1].db),
            (3, 0),
            "db 0 comes back"
        );
        let mut w = RdbWriter::new(Vec::new(), "written.rdb");
        for e in &order {
            w.write_entry(e.db, &e.key, e.expire_at_ms, &e.payload)
                .unwrap();
        }
        let written = w.finish().unwrap();
        let (again, _) = read_all(&written).unwrap();
        assert_eq!(again, order);
        let dir3 = tempfile::tempdir().unwrap();
        std::fs::write(dir3.path().join("dump.rdb"), &written).unwrap();
        let loaded = Server::start(dir3.path(), &[]);
        assert_server_has(
            &mut loaded.connect(),
            &entries,
            false,
            "the server that loaded the written file",
        );

        // The rows of the file through RdbSink give the same file content.
        let mut src = RdbSource::new(&bytes[..], "dump.rdb", None).unwrap();
        let mut sink = RdbSink::new(Vec::new(), "copy.rdb");
        crate::formats::pipe(&mut src, &mut sink).unwrap();
        sink.finish().unwrap();
        let (copied, _) = read_all(&sink.into_inner().unwrap()).unwrap();
        assert_eq!(copied, entries);
    }

    #[test]
    fn a_file_saved_without_checksum_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        // `rdbchecksum` cannot be changed with CONFIG SET: it is set at startup.
        let server = Server::start(dir.path(), &["--rdbchecksum", "no"]);
        let mut con = server.connect();
        run::<()>(&mut con, redis::cmd("SET").arg("k").arg("v"));
        run::<()>(&mut con, &mut redis::cmd("SAVE"));
        let bytes = std::fs::read(dir.path().join("dump.rdb")).unwrap();
        let summary = check(&bytes[..], "dump.rdb").unwrap();
        assert_eq!(summary.checksum, Checksum::Disabled);
        assert_eq!(summary.keys, 1);
    }
}

#[test]
fn a_check_stops_when_interrupted() {
    let mut w = RdbWriter::new(Vec::new(), "many.rdb");
    for i in 0..3000u32 {
        let body = [&[0u8, 4][..], &i.to_le_bytes()[..]].concat();
        let mut payload = body.clone();
        payload.extend_from_slice(&dump_footer(&body, 10));
        w.write_entry(0, format!("k{i}").as_bytes(), None, &payload)
            .unwrap();
    }
    let file = w.finish().unwrap();
    let stop: Interrupt = std::sync::Arc::new(|| true);
    let go: Interrupt = std::sync::Arc::new(|| false);
    let e = check_interruptible(file.as_slice(), "many.rdb", Some(&stop)).unwrap_err();
    assert!(matches!(e, RdbError::Interrupted { .. }), "{e}");
    let s = check_interruptible(file.as_slice(), "many.rdb", Some(&go)).unwrap();
    assert_eq!(s.keys, 3000);
}
