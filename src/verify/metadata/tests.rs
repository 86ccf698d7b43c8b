use super::*;

/// What Java's `DataOutputStream` writes, for building metadata files by hand.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn utf(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(&(s.len() as u16).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn header(&mut self, format: i32, checkpoint_id: i64) -> &mut Self {
        self.i32(MAGIC as i32).i32(format).i64(checkpoint_id).i32(0)
    }
    /// An operator of format 3 or 4 with one subtask whose keyed state is `keyed`.
    fn operator(&mut self, format: i32, keyed: impl FnOnce(&mut Out)) -> &mut Self {
        if format >= 5 {
            self.utf("count").utf("counter-uid");
        }
        self.i64(1).i64(2).i32(2).i32(128).u8(0).i32(1).i32(0);
        self.i32(0).i32(0);
        keyed(self);
        self.u8(0).i32(0).i32(0);
        self
    }
}

const CANONICAL: &[u8] =
    include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-canonical-inline");
const NATIVE: &[u8] = include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-native-inline");
const CHECKPOINT: &[u8] =
    include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-checkpoint-inline");

#[test]
fn reads_what_flink_2_2_wrote() {
    let canonical = parse(CANONICAL).unwrap();
    assert_eq!(canonical.format, 6);
    assert_eq!(canonical.checkpoint_id, 2);
    assert_eq!(
        canonical.properties.unwrap().kind,
        SnapshotKind::Savepoint {
            format: Some(crate::domain::FormatType::Canonical),
            action: None
        }
    );
    assert!(!canonical.operators.is_empty());
    assert!(canonical.inline.handles > 0);

    let native = parse(NATIVE).unwrap();
    assert_eq!(native.checkpoint_id, 3);
    assert!(matches!(
        native.properties.unwrap().kind,
        SnapshotKind::Savepoint {
            format: Some(crate::domain::FormatType::Native),
            ..
        }
    ));

    let checkpoint = parse(CHECKPOINT).unwrap();
    assert_eq!(checkpoint.checkpoint_id, 4);
    assert!(matches!(
        checkpoint.properties.unwrap().kind,
        SnapshotKind::Checkpoint { .. }
    ));
    assert!(checkpoint.operators.iter().any(|o| o.name.is_some()));
}

const ROCKSDB: [(&str, &[u8]); 6] = [
    (
        "1.20.5 native",
        include_bytes!("../../../tests/fixtures/metadata/flink-1.20.5-rocksdb-native"),
    ),
    (
        "1.20.5 retained",
        include_bytes!("../../../tests/fixtures/metadata/flink-1.20.5-rocksdb-retained"),
    ),
    (
        "1.20.5 many",
        include_bytes!("../../../tests/fixtures/metadata/flink-1.20.5-rocksdb-many"),
    ),
    (
        "2.2.1 native",
        include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-rocksdb-native"),
    ),
    (
        "2.2.1 retained",
        include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-rocksdb-retained"),
    ),
    (
        "2.2.1 many",
        include_bytes!("../../../tests/fixtures/metadata/flink-2.2.1-rocksdb-many"),
    ),
];

#[test]
fn reads_rocksdb_snapshots_of_both_releases() {
    for (name, bytes) in ROCKSDB {
        let snapshot = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let format = if name.starts_with("1.20") { 4 } else { 6 };
        assert_eq!(snapshot.format, format, "{name}");
        assert!(snapshot.is_incremental(), "{name}");
        assert!(!snapshot.files.is_empty(), "{name}");
        let kind = &snapshot.properties.as_ref().unwrap().kind;
        assert_eq!(
            matches!(kind, SnapshotKind::Checkpoint { .. }),
            !name.ends_with("native"),
            "{name}: {kind}"
        );
        // Savepoints name their files relative to their directory; checkpoints name shared/.
        let relative = snapshot
            .files
            .iter()
            .all(|f| matches!(f.path, FilePath::Relative(_)));
        assert_eq!(relative, name.ends_with("native"), "{name}");
        if name.starts_with("2.2") {
            assert!(
                snapshot.operators.iter().all(|o| o.name.is_some()),
                "{name}"
            );
        }
    }
}

#[test]
fn every_prefix_of_a_real_file_is_an_error_and_never_a_panic() {
    for file in [CANONICAL, NATIVE, CHECKPOINT, ROCKSDB[0].1, ROCKSDB[4].1] {
        for len in 0..file.len() {
            let err = parse(&file[..len]).unwrap_err();
            assert!(err.is_truncated(), "prefix {len}: {err}");
        }
    }
}

#[test]
fn every_single_byte_change_of_a_real_file_is_survived() {
    for at in 0..CANONICAL.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bytes = CANONICAL.to_vec();
            bytes[at] ^= flip;
            let _ = parse(&bytes);
        }
    }
}

#[test]
fn files_relative_absolute_incremental_and_segments_are_listed() {
    let mut out = Out::default();
    out.header(3, 9).i32(2);
    out.operator(3, |o| {
        o.u8(KEY_GROUPS_V2_CODE).i32(0).i32(2).i64(0).i64(10);
        o.u8(6).utf("1f2e-state").i64(700);
        o.utf("handle-id");
    });
    out.operator(3, |o| {
        o.u8(11).i64(9).utf("backend").i32(0).i32(128).i64(99);
        o.u8(2).i64(40).utf("file:/ck/job/chk-9/meta");
        o.i32(2);
        o.utf("000001.sst")
            .u8(2)
            .i64(500)
            .utf("file:/ck/job/shared/a.sst");
        o.utf("000002.sst")
            .u8(15)
            .i64(0)
            .i64(300)
            .i32(1)
            .utf("file:/ck/job/shared/merged")
            .utf("lf");
        o.i32(1)
            .utf("MANIFEST")
            .u8(1)
            .utf("inline")
            .i32(3)
            .u8(1)
            .u8(2)
            .u8(3);
        o.utf("handle-id");
    });
    let snapshot = parse(&out.0).unwrap();
    assert_eq!(snapshot.checkpoint_id, 9);
    assert_eq!(snapshot.properties, None);
    let files: Vec<_> = snapshot
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size, f.role, f.operator))
        .collect();
    assert_eq!(
        files,
        vec![
            (FilePath::Relative("1f2e-state".into()), 700, Role::Keyed, 0),
            (
                FilePath::Absolute("file:/ck/job/chk-9/meta".into()),
                40,
                Role::BackendMeta,
                1
            ),
            (
                FilePath::Absolute("file:/ck/job/shared/a.sst".into()),
                500,
                Role::Shared,
                1
            ),
            (
                FilePath::Absolute("file:/ck/job/shared/merged".into()),
                300,
                Role::Shared,
                1
            ),
        ]
    );
    assert_eq!(
        snapshot.inline,
        Inline {
            handles: 1,
            bytes: 3
        }
    );
    assert!(snapshot.is_incremental());
    assert_eq!(snapshot.operators[1].id, "00000000000000010000000000000002");
}

const KEY_GROUPS_V2_CODE: u8 = 12;

#[test]
fn unknown_formats_and_handle_types_are_unsupported_not_damaged() {
    let mut out = Out::default();
    out.header(7, 1).i32(0);
    assert_eq!(parse(&out.0).unwrap_err().kind, ErrorKind::Unsupported);

    let mut out = Out::default();
    out.header(3, 1).i32(1);
    out.operator(3, |o| {
        o.u8(99);
    });
    assert_eq!(parse(&out.0).unwrap_err().kind, ErrorKind::Unsupported);
}

#[test]
fn huge_counts_cost_nothing() {
    let mut out = Out::default();
    out.header(3, 1).i32(1);
    out.operator(3, |o| {
        o.u8(3).i32(0).i32(i32::MAX);
    });
    assert!(parse(&out.0).unwrap_err().is_truncated());

    let mut out = Out::default();
    out.header(3, 1).i32(i32::MAX);
    assert!(parse(&out.0).unwrap_err().is_truncated());
}

#[test]
fn nested_changelog_handles_are_bounded() {
    let mut out = Out::default();
    out.header(3, 1).i32(1);
    out.operator(3, |o| {
        for _ in 0..100 {
            o.u8(8).i32(0).i32(1).i64(0).i32(1);
        }
    });
    assert_eq!(parse(&out.0).unwrap_err().kind, ErrorKind::Malformed);
}
