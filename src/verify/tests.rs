//! Header parsing, outcome mapping and target mapping, without Flink or a store; and the
//! verifier's cache over local files.

use std::path::PathBuf;
use std::time::Duration;

use super::files::{FileReader, FileRoot, SLOTS_PER_ROOT};
use super::header::{self, FileKind, Header, NotFlink, parse};
use super::outcome::{Mode, Outcome, Verdict, apply, verdict};
#[cfg(feature = "object-stores")]
use super::store::aws_credentials_configured;
use super::store::{ReadError, bucket_endpoint, error_text};
use super::target::{Target, TargetRules, directory_name, target, valid_bucket};
use super::{Source, Verifier, VerifyConfig, fmt_duration};
use crate::admission::{Decision, Reason};
use crate::domain::{Location, LocationRules};

/// The header of `chk-7/_metadata` as written by Flink 2.2.1.
const FLINK_CHK_7: [u8; 16] = [0x49, 0x60, 0x67, 0x2d, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 7];

fn loc(raw: &str) -> Location {
    Location::parse(raw, &LocationRules::default()).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn header_with(version: i32, id: i64) -> Vec<u8> {
    let mut bytes = header::MAGIC.to_be_bytes().to_vec();
    bytes.extend(version.to_be_bytes());
    bytes.extend(id.to_be_bytes());
    bytes
}

#[test]
fn flink_headers_parse() {
    assert_eq!(
        parse(&FLINK_CHK_7),
        Header::Flink {
            version: 6,
            checkpoint_id: 7
        }
    );
    for version in 2..=6 {
        assert_eq!(
            parse(&header_with(version, 1 << 40)),
            Header::Flink {
                version,
                checkpoint_id: 1 << 40
            }
        );
    }
}

#[test]
fn damaged_and_foreign_files_are_not_flink() {
    let cases: &[(&[u8], Header)] = &[
        (b"", Header::NotFlink(NotFlink::Empty)),
        (
            &[0x49, 0x60],
            Header::NotFlink(NotFlink::Truncated {
                len: 2,
                flink_magic: true,
            }),
        ),
        (
            b"PK\x03",
            Header::NotFlink(NotFlink::Truncated {
                len: 3,
                flink_magic: false,
            }),
        ),
        (
            b"PK\x03\x04 a zip file",
            Header::NotFlink(NotFlink::Magic { found: 0x504b_0304 }),
        ),
        (
            b"{\"json\": true}\n",
            Header::NotFlink(NotFlink::Magic { found: 0x7b22_6a73 }),
        ),
        (
            &FLINK_CHK_7[..6],
            Header::NotFlink(NotFlink::Truncated {
                len: 6,
                flink_magic: true,
            }),
        ),
        (
            &FLINK_CHK_7[..12],
            Header::NotFlink(NotFlink::Truncated {
                len: 12,
                flink_magic: true,
            }),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(&parse(bytes), want, "{bytes:02x?}");
    }
}

#[test]
fn versions_flink_does_not_restore_are_unknown() {
    for version in [0, 1, 7, 42, -1] {
        assert_eq!(
            parse(&header_with(version, 3)),
            Header::UnknownVersion { version },
            "version {version}"
        );
    }
    // The version is judged as soon as it is there, even in a short file.
    assert_eq!(
        parse(&header_with(9, 3)[..8]),
        Header::UnknownVersion { version: 9 }
    );
}

#[test]
fn chk_directories_promise_their_id() {
    for (name, want) in [
        ("chk-7", Some(7)),
        ("chk-007", Some(7)),
        ("chk-123456789012", Some(123_456_789_012)),
        ("chk-", None),
        ("chk--1", None),
        ("chk-7a", None),
        ("chk-+7", None),
        ("CHK-7", None),
        ("savepoint-f35801-c840b0a020e8", None),
        ("chk-99999999999999999999", None),
    ] {
        assert_eq!(header::chk_number(name), want, "{name}");
    }
}

#[test]
fn outcome_checks_the_chk_number() {
    let flink = |id| Header::Flink {
        version: 6,
        checkpoint_id: id,
    };
    assert_eq!(
        Outcome::from_header(flink(7), "chk-7"),
        Outcome::Verified {
            checkpoint_id: 7,
            version: 6
        }
    );
    assert_eq!(
        Outcome::from_header(flink(9), "chk-7"),
        Outcome::CheckpointMismatch {
            directory: 7,
            found: 9
        }
    );
    assert_eq!(
        Outcome::from_header(flink(9), "savepoint-f35801-c840b0a020e8"),
        Outcome::Verified {
            checkpoint_id: 9,
            version: 6
        }
    );
    assert_eq!(
        Outcome::from_header(Header::UnknownVersion { version: 8 }, "chk-7"),
        Outcome::UnknownVersion { version: 8 }
    );
}

#[test]
fn messages_name_the_location_and_the_finding() {
    let at = "s3://b/cp/chk-7";
    let cases = [
        (
            Outcome::Verified {
                checkpoint_id: 42,
                version: 6,
            },
            "s3://b/cp/chk-7: verified: checkpoint 42",
        ),
        (Outcome::Missing, "no _metadata at s3://b/cp/chk-7"),
        (
            Outcome::NotFlink(NotFlink::Magic { found: 0x504b_0304 }),
            "not a Flink savepoint: s3://b/cp/chk-7/_metadata: magic number 0x504b0304, where Flink writes 0x4960672d",
        ),
        (
            Outcome::NotFlink(NotFlink::Empty),
            "not a Flink savepoint: s3://b/cp/chk-7/_metadata: the file is empty",
        ),
        (
            Outcome::NotFlink(NotFlink::Truncated {
                len: 12,
                flink_magic: true,
            }),
            "truncated: 12 bytes",
        ),
        (
            Outcome::NotFlink(NotFlink::NotRegular {
                kind: FileKind::Fifo,
            }),
            "not a Flink savepoint: s3://b/cp/chk-7/_metadata: a FIFO, not a regular file",
        ),
        (
            Outcome::UnknownVersion { version: 9 },
            "unknown Flink metadata format version 9 (known: 2 to 6)",
        ),
        (
            Outcome::UnknownVersion { version: 1 },
            "format version 1 (Flink 1.1 and 1.2), which Flink no longer restores from",
        ),
        (
            Outcome::CheckpointMismatch {
                directory: 7,
                found: 9,
            },
            "s3://b/cp/chk-7: chk-7 holds checkpoint 9",
        ),
        (
            Outcome::could_not_check("timed out after 2.0s"),
            "could not check s3://b/cp/chk-7: timed out after 2.0s",
        ),
    ];
    for (outcome, needle) in cases {
        let text = outcome.describe(at);
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
}

#[test]
fn modes_map_outcomes_to_verdicts() {
    let verified = Outcome::Verified {
        checkpoint_id: 1,
        version: 6,
    };
    let refutations = [
        Outcome::Missing,
        Outcome::NotFlink(NotFlink::Empty),
        Outcome::NotFlink(NotFlink::NotRegular {
            kind: FileKind::Fifo,
        }),
        Outcome::UnknownVersion { version: 7 },
        Outcome::CheckpointMismatch {
            directory: 1,
            found: 2,
        },
    ];
    let unknown = Outcome::could_not_check("no credentials");
    let at = "s3://b/p";
    for mode in [Mode::Off, Mode::Warn, Mode::Deny] {
        assert_eq!(verdict(mode, &verified, at), Verdict::Silent, "{mode:?}");
    }
    for outcome in refutations.iter().chain([&unknown]) {
        assert_eq!(verdict(Mode::Off, outcome, at), Verdict::Silent);
        assert!(matches!(
            verdict(Mode::Warn, outcome, at),
            Verdict::Warn(w) if w.starts_with("spec.savepointLocation: ")
        ));
    }
    for outcome in &refutations {
        assert!(
            matches!(verdict(Mode::Deny, outcome, at), Verdict::Deny(_)),
            "{outcome:?}"
        );
    }
    assert!(matches!(
        verdict(Mode::Deny, &unknown, at),
        Verdict::Warn(_)
    ));
}

#[test]
fn verdicts_apply_to_decisions() {
    let mut allowed = Decision::allow(Reason::Allowed);
    allowed.warnings.push("earlier".into());
    let warned = apply(allowed.clone(), Verdict::Warn("w".into()));
    assert!(warned.allowed);
    assert_eq!(warned.warnings, ["earlier", "w"]);

    let denied = apply(allowed.clone(), Verdict::Deny("no _metadata".into()));
    assert!(!denied.allowed);
    assert_eq!(denied.reason, Reason::LocationRefused);
    assert_eq!(denied.message.as_deref(), Some("no _metadata"));
    assert_eq!(denied.warnings, ["earlier"]);

    assert_eq!(apply(allowed.clone(), Verdict::Silent), allowed);

    let invalid = Decision::deny(Reason::Invalid, "bad field");
    assert_eq!(apply(invalid.clone(), Verdict::Deny("x".into())), invalid);
    assert_eq!(apply(invalid.clone(), Verdict::Warn("x".into())), invalid);
}

#[test]
fn locations_map_to_targets() {
    let rules = TargetRules {
        file_roots: vec![PathBuf::from("/data/flink")],
        azure_account: Some("acct".into()),
        s3_virtual_hosted: false,
    };
    let ok = |raw: &str| target(&loc(raw), &rules).unwrap_or_else(|e| panic!("{raw}: {e}"));
    let s3 = |bucket: &str, key: &str| Target::S3 {
        bucket: bucket.into(),
        key: key.into(),
    };
    assert_eq!(
        ok("s3a://flink-state/cp/3f2a/chk-42/_metadata"),
        s3("flink-state", "cp/3f2a/chk-42/_metadata")
    );
    assert_eq!(ok("s3p://b-1/sp/"), s3("b-1", "sp/_metadata"));
    assert_eq!(ok("s3://b-1"), s3("b-1", "_metadata"));
    assert_eq!(
        ok("gs://bucket/sp/savepoint-1"),
        Target::Gcs {
            bucket: "bucket".into(),
            key: "sp/savepoint-1/_metadata".into()
        }
    );
    assert_eq!(
        ok("abfss://state@acct.dfs.core.windows.net/sp/x"),
        Target::Azure {
            container: "state".into(),
            key: "sp/x/_metadata".into()
        }
    );
    assert_eq!(
        ok("wasbs://state@ACCT.blob.core.windows.net/sp"),
        Target::Azure {
            container: "state".into(),
            key: "sp/_metadata".into()
        }
    );
    assert_eq!(
        ok("file:/data/flink/sp/savepoint-f35801-c840b0a020e8"),
        Target::File {
            path: "/data/flink/sp/savepoint-f35801-c840b0a020e8/_metadata".into()
        }
    );
    assert_eq!(directory_name(&loc("s3://b/cp/chk-42/_metadata")), "chk-42");
}

#[test]
fn locations_that_cannot_be_checked_say_why() {
    let rules = TargetRules {
        file_roots: vec![PathBuf::from("/data/flink")],
        azure_account: Some("acct".into()),
        s3_virtual_hosted: true,
    };
    for (raw, needle) in [
        (
            "hdfs://namenode:8020/flink/sp",
            "names host \"namenode:8020\"",
        ),
        ("viewfs://cluster/flink/sp", "names host \"cluster\""),
        ("hdfs:///flink/sp", "no store configured for scheme hdfs"),
        ("oss://bucket/sp", "no store configured for scheme oss"),
        (
            "file:/data/flinkx/sp",
            "not under an allowed root (/data/flink)",
        ),
        ("file:/etc/passwd", "not under an allowed root"),
        (
            "wasbs://state@other.blob.core.windows.net/sp",
            "configured for account \"acct\"",
        ),
        ("abfss://state@acct.evil.example/sp", "names storage host"),
        ("s3://Legacy_Bucket/sp", "not a valid S3 bucket name"),
    ] {
        let why = target(&loc(raw), &rules).expect_err(raw);
        assert!(why.contains(needle), "{raw}: {why:?} lacks {needle:?}");
    }
    let none = TargetRules::default();
    let why = target(&loc("file:/data/flink/sp"), &none).unwrap_err();
    assert!(why.contains("no file roots are configured"), "{why}");
    let why = target(&loc("wasbs://c@acct.blob.core.windows.net/sp"), &none).unwrap_err();
    assert!(
        why.contains("no store configured for scheme wasbs"),
        "{why}"
    );
}

#[test]
fn bucket_names_are_checked_before_they_reach_a_request() {
    for name in ["flink-state", "a.b.c", "b-1", "123"] {
        assert!(valid_bucket(name, true), "{name}");
        assert!(valid_bucket(name, false), "{name}");
    }
    for name in ["Legacy_Bucket", "UPPER"] {
        assert!(!valid_bucket(name, true), "{name}");
        assert!(valid_bucket(name, false), "{name}");
    }
    for name in [
        "",
        "ab",
        "-ab",
        "a..b",
        "user@host",
        "host:443",
        "a/b",
        "ab-",
    ] {
        assert!(!valid_bucket(name, true), "{name}");
    }
    for name in ["", "ab", "user@host", "host:443", "-ab"] {
        assert!(!valid_bucket(name, false), "{name}");
    }
    assert_eq!(
        bucket_endpoint("http://127.0.0.1:9000/", "b").unwrap(),
        "http://b.127.0.0.1:9000"
    );
    assert_eq!(
        bucket_endpoint("https://minio.storage", "flink").unwrap(),
        "https://flink.minio.storage"
    );
    assert!(bucket_endpoint("minio:9000", "b").is_err());
}

#[cfg(feature = "object-stores")]
#[test]
fn aws_credentials_come_from_the_environment_only() {
    use object_store::aws::AmazonS3Builder;
    let none = |_: &str| None::<String>;
    assert!(!aws_credentials_configured(&AmazonS3Builder::new(), none));
    let keys = AmazonS3Builder::new()
        .with_access_key_id("AKIA")
        .with_secret_access_key("secret");
    assert!(aws_credentials_configured(&keys, none));
    let half = AmazonS3Builder::new().with_access_key_id("AKIA");
    assert!(!aws_credentials_configured(&half, none));
    let irsa = |name: &str| {
        matches!(name, "AWS_WEB_IDENTITY_TOKEN_FILE" | "AWS_ROLE_ARN").then(|| "x".to_string())
    };
    assert!(aws_credentials_configured(&AmazonS3Builder::new(), irsa));
}

#[test]
fn budgets_keep_a_margin_before_the_deadline() {
    let verifier = Verifier::new(VerifyConfig::default()).unwrap();
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    assert_eq!(verifier.budget(s(10)), s(2));
    assert_eq!(verifier.budget(s(3)), s(2));
    assert_eq!(verifier.budget(ms(2500)), ms(1500));
    assert_eq!(verifier.budget(s(1)), ms(500));
    assert_eq!(verifier.budget(Duration::ZERO), Duration::ZERO);
    assert_eq!(fmt_duration(s(2)), "2.0s");
    assert_eq!(fmt_duration(ms(1500)), "1.5s");
    assert_eq!(fmt_duration(ms(997)), "1.0s");
}

#[test]
fn error_texts_are_one_bounded_line() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer\nline")]
    struct Outer(#[source] std::io::Error);
    let err = Outer(std::io::Error::other("inner cause"));
    assert_eq!(error_text(&err), "outer line: inner cause");
    let long = std::io::Error::other("é".repeat(400));
    let text = error_text(&long);
    assert!(text.len() <= 304 && text.ends_with('…'), "{text}");
}

#[tokio::test]
async fn local_files_are_read_under_roots_and_cached() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let chk = root.path().join("job/chk-7");
    std::fs::create_dir_all(&chk).unwrap();
    std::fs::write(chk.join("_metadata"), FLINK_CHK_7).unwrap();
    std::fs::create_dir_all(root.path().join("empty")).unwrap();
    std::fs::write(root.path().join("empty/_metadata"), b"").unwrap();
    std::fs::create_dir_all(outside.path().join("sp")).unwrap();
    std::fs::write(outside.path().join("sp/_metadata"), FLINK_CHK_7).unwrap();
    std::os::unix::fs::symlink(outside.path().join("sp"), root.path().join("link")).unwrap();

    let verifier = Verifier::new(VerifyConfig {
        file_roots: vec![root.path().to_path_buf()],
        ..VerifyConfig::default()
    })
    .unwrap();
    let budget = Duration::from_secs(2);
    let at = |rel: &str| loc(&format!("file:{}/{rel}", root.path().display()));

    let first = verifier.check(&at("job/chk-7"), budget).await;
    assert_eq!(
        first.outcome,
        Outcome::Verified {
            checkpoint_id: 7,
            version: 6
        }
    );
    assert_eq!(first.source, Source::Read);
    let again = verifier.check(&at("job/chk-7/_metadata"), budget).await;
    assert_eq!(
        (again.outcome, again.source),
        (first.outcome, Source::Cache)
    );

    let empty = verifier.check(&at("empty"), budget).await;
    assert_eq!(empty.outcome, Outcome::NotFlink(NotFlink::Empty));
    assert_eq!(
        verifier.check(&at("nothing-here"), budget).await.outcome,
        Outcome::Missing
    );
    assert_eq!(
        verifier
            .check(&at("job/chk-7/_metadata/x"), budget)
            .await
            .outcome,
        Outcome::Missing,
        "a path through a file is missing"
    );
    let escaped = verifier.check(&at("link"), budget).await.outcome;
    assert!(
        matches!(&escaped, Outcome::CouldNotCheck { why } if why.contains("outside the allowed roots")),
        "{escaped:?}"
    );
    let elsewhere = loc(&format!("file:{}/sp", outside.path().display()));
    let outcome = verifier.check(&elsewhere, budget).await.outcome;
    assert!(
        matches!(&outcome, Outcome::CouldNotCheck { why } if why.contains("not under an allowed root")),
        "{outcome:?}"
    );
}

#[test]
fn missing_file_roots_are_refused_at_start() {
    let err = Verifier::new(VerifyConfig {
        file_roots: vec![PathBuf::from("/does/not/exist")],
        ..VerifyConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("/does/not/exist"), "{err}");
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[tokio::test]
async fn what_is_not_a_regular_file_is_refused_unread() {
    let root = tempfile::tempdir().unwrap();
    for dir in ["fifo", "dir/_metadata", "socket"] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    mkfifo(&root.path().join("fifo/_metadata"));
    let _socket =
        std::os::unix::net::UnixListener::bind(root.path().join("socket/_metadata")).unwrap();
    let verifier = Verifier::new(VerifyConfig {
        mode: Mode::Deny,
        file_roots: vec![root.path().to_path_buf()],
        ..VerifyConfig::default()
    })
    .unwrap();
    let at = |rel: &str| loc(&format!("file:{}/{rel}", root.path().display()));
    let started = std::time::Instant::now();
    for (rel, kind) in [
        ("fifo", FileKind::Fifo),
        ("dir", FileKind::Directory),
        ("socket", FileKind::Socket),
    ] {
        let outcome = verifier
            .check(&at(rel), Duration::from_secs(2))
            .await
            .outcome;
        assert_eq!(
            outcome,
            Outcome::NotFlink(NotFlink::NotRegular { kind }),
            "{rel}"
        );
        assert!(matches!(
            verdict(Mode::Deny, &outcome, &at(rel).to_string()),
            Verdict::Deny(m) if m.contains(&format!("{rel}/_metadata: {kind}, not a regular file"))
        ));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn mk_root(dir: &std::path::Path) -> FileRoot {
    FileRoot {
        given: dir.to_path_buf(),
        canonical: std::fs::canonicalize(dir).unwrap(),
    }
}

#[tokio::test]
async fn stuck_reads_hold_only_their_own_slots_and_paths() {
    let hung = tempfile::tempdir().unwrap();
    let healthy = tempfile::tempdir().unwrap();
    std::fs::write(healthy.path().join("_metadata"), FLINK_CHK_7).unwrap();
    let reader = FileReader::new(vec![mk_root(hung.path()), mk_root(healthy.path())]);
    let soon = || tokio::time::Instant::now() + Duration::from_millis(100);

    // Reads that block until `release` is dropped, one per slot of the hung root.
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = std::sync::Arc::new(std::sync::Mutex::new(blocked));
    for i in 0..SLOTS_PER_ROOT {
        let blocked = blocked.clone();
        let path = hung.path().join(format!("sp-{i}/_metadata"));
        let err = reader
            .run(&path, soon(), move || {
                let _ = blocked.lock().map(|rx| rx.recv());
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ReadError::Failed(why) if why.contains("the read did not return")),
            "{err:?}"
        );
    }

    let stuck_path = hung.path().join("sp-0/_metadata");
    let started = std::time::Instant::now();
    let err = reader.read_header(&stuck_path, soon()).await.unwrap_err();
    assert!(
        matches!(&err, ReadError::Failed(why) if why.contains("an earlier read of it has not returned")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "refused at once"
    );

    let err = reader
        .read_header(&hung.path().join("other/_metadata"), soon())
        .await
        .unwrap_err();
    let no_slot = format!(
        "no read slot under {} came free in 0.1s: its {SLOTS_PER_ROOT} reads have not returned",
        hung.path().display()
    );
    assert!(
        matches!(&err, ReadError::Failed(why) if why.contains(&no_slot)),
        "{err:?}"
    );

    let bytes = reader
        .read_header(&healthy.path().join("_metadata"), soon())
        .await
        .unwrap();
    assert_eq!(bytes, FLINK_CHK_7, "another root keeps its slots");

    drop(release);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(1);
        match reader.read_header(&stuck_path, far).await {
            Err(ReadError::Missing) => break,
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_format_the_deployments_flink_cannot_read_is_its_own_finding() {
    use crate::domain::FlinkVersion;
    use crate::verify::{RestoringFlink, verdict_for};
    let at = "s3://flink-state/savepoints/sp-2";
    let written_by_2_2 = Outcome::Verified {
        checkpoint_id: 7,
        version: 6,
    };
    let flink = |version: &str| RestoringFlink {
        deployment: "app".into(),
        version: FlinkVersion::parse(version).unwrap(),
    };
    let old = flink("1.20");
    let Verdict::Deny(message) = verdict_for(Mode::Deny, &written_by_2_2, at, Some(&old)) else {
        panic!("deny mode refuses a format Flink 1.20 cannot read");
    };
    assert!(
        message.contains("format version 6, which Flink 2.1 to 2.3 writes")
            && message.contains("Deployment \"app\" runs Flink 1.20, which reads up to version 4"),
        "{message}"
    );
    assert!(matches!(
        verdict_for(Mode::Warn, &written_by_2_2, at, Some(&old)),
        Verdict::Warn(_)
    ));
    for readers in [Some(flink("2.2")), Some(flink("1.9")), None] {
        assert_eq!(
            verdict_for(Mode::Deny, &written_by_2_2, at, readers.as_ref()),
            Verdict::Silent,
            "a reader that can read it, or one whose formats are unknown: no verdict"
        );
    }
}
