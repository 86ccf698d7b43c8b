//! Flink releases, the `_metadata` format each reads ([`newest_metadata_format`]) and the
//! configuration keys each reads: [`FlinkVersion`] (Ververica's
//! `spec.template.spec.artifact.flinkVersion`, e.g. `"1.20"`), [`savepoint_dir_keys`] and
//! [`claim_mode_keys`], as `CheckpointingOptions` and `StateRecoveryOptions` (1.20 on) or
//! `SavepointConfigOptions` (before) define them in `flink-dist`: current name first,
//! then the deprecated aliases the release still reads. Checked against the `flink-dist`
//! jars of 1.15.4, 1.20.5 and 2.2.1 (PyPI `apache-flink-libraries`, `apache-flink`): their
//! `MetadataSerializers` end at `MetadataV3Serializer`, `V4` and `V6`, and 1.20 is the
//! first with `execution.checkpointing.savepoint-dir` and `StateRecoveryOptions`.

use std::fmt;

use super::savepoint::wire_enum;

/// A Flink release line, `MAJOR.MINOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlinkVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
}

impl FlinkVersion {
    /// 1.20, the release that renamed the checkpointing and recovery keys.
    pub const KEYS_RENAMED: FlinkVersion = FlinkVersion {
        major: 1,
        minor: 20,
    };

    /// Parses `1.20`, `1.20.1`, `2.2` or `2.2-stream2`: the major and minor numbers;
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for FlinkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Keys of the default savepoint directory before 1.20.
const SAVEPOINT_DIR_BEFORE_1_20: &[&str] =
    &["state.savepoints.dir", "savepoints.state.backend.fs.dir"];
/// Keys of the default savepoint directory from 1.20 on.
const SAVEPOINT_DIR_FROM_1_20: &[&str] = &[
    "execution.checkpointing.savepoint-dir",
    "state.savepoints.dir",
    "savepoints.state.backend.fs.dir",
];

/// The keys `version` reads its default savepoint directory from, current name first;
/// every key of any release when the version is unknown.
pub fn savepoint_dir_keys(version: Option<FlinkVersion>) -> &'static [&'static str] {
    match version {
        Some(v) if v < FlinkVersion::KEYS_RENAMED => SAVEPOINT_DIR_BEFORE_1_20,
        _ => SAVEPOINT_DIR_FROM_1_20,
    }
}

/// The keys `version` reads how it restores from a snapshot (claim mode), current name
/// first; every key of any release when the version is unknown.
pub fn claim_mode_keys(version: Option<FlinkVersion>) -> &'static [&'static str] {
    match version {
        Some(v) if v < FlinkVersion::KEYS_RENAMED => &["execution.savepoint-restore-mode"],
        _ => &[
            "execution.state-recovery.claim-mode",
            "execution.savepoint-restore-mode",
        ],
    }
}

/// A release line as `(major, minor)`.
type Release = (u16, u16);

/// Releases whose metadata format is known: `(first, last, format)`, where `format` is
/// the `_metadata` version those releases write and the newest they read (their
/// `MetadataSerializers` register `MetadataV1Serializer` up to `MetadataV<format>`).
const METADATA_FORMATS: &[(Release, Release, i32)] = &[
    ((1, 15), (1, 15), 3),
    ((1, 16), (1, 20), 4),
    ((2, 0), (2, 0), 5),
    ((2, 1), (2, 3), 6),
];

/// The newest `_metadata` format `version` reads, which is also the one it writes;
/// `None` for releases outside 1.15 to 2.3.
pub fn newest_metadata_format(version: FlinkVersion) -> Option<i32> {
    let at = (version.major, version.minor);
    METADATA_FORMATS
        .iter()
        .find(|(first, last, _)| (*first..=*last).contains(&at))
        .map(|(_, _, format)| *format)
}

/// The releases (of 1.15 to 2.3) that write `_metadata` format `format`, e.g. `2.1 to 2.3`.
pub fn releases_writing(format: i32) -> Option<String> {
    METADATA_FORMATS
        .iter()
        .find(|(_, _, written)| *written == format)
        .map(|(first, last, _)| match first == last {
            true => format!("{}.{}", first.0, first.1),
            false => format!("{}.{} to {}.{}", first.0, first.1, last.0, last.1),
        })
}

wire_enum! {
    /// How a job restores from a snapshot (`RestoreMode`, from 1.20 `RecoveryClaimMode`).
    pub enum ClaimMode {
        /// Flink takes ownership of the snapshot and may delete it once subsumed.
        Claim = "CLAIM",
        /// Flink leaves the snapshot alone (the default).
        NoClaim = "NO_CLAIM",
        /// Before 2.0: Flink neither claims nor copies.
        Legacy = "LEGACY",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_ververica_writes_them() {
        let v = |major, minor| Some(FlinkVersion { major, minor });
        assert_eq!(FlinkVersion::parse("1.20"), v(1, 20));
        assert_eq!(FlinkVersion::parse("1.15.4"), v(1, 15));
        assert_eq!(FlinkVersion::parse("2.2-stream1"), v(2, 2));
        assert_eq!(FlinkVersion::parse("latest"), None);
        assert_eq!(FlinkVersion::parse("2"), None);
    }

    #[test]
    fn each_release_reads_up_to_the_format_it_writes() {
        let format = |text| newest_metadata_format(FlinkVersion::parse(text).unwrap());
        assert_eq!(format("1.15"), Some(3));
        assert_eq!(format("1.20"), Some(4));
        assert_eq!(format("2.0"), Some(5));
        assert_eq!(format("2.2"), Some(6));
        assert_eq!(format("1.14"), None);
        assert_eq!(format("2.4"), None);
        assert_eq!(releases_writing(6).as_deref(), Some("2.1 to 2.3"));
        assert_eq!(releases_writing(5).as_deref(), Some("2.0"));
        assert_eq!(releases_writing(2), None);
    }

    #[test]
    fn keys_follow_the_release_that_renamed_them() {
        let old = FlinkVersion::parse("1.19");
        let new = FlinkVersion::parse("2.2");
        assert_eq!(savepoint_dir_keys(old)[0], "state.savepoints.dir");
        assert!(!savepoint_dir_keys(old).contains(&"execution.checkpointing.savepoint-dir"));
        assert_eq!(
            savepoint_dir_keys(new)[0],
            "execution.checkpointing.savepoint-dir"
        );
        assert!(savepoint_dir_keys(new).contains(&"state.savepoints.dir"));
        assert_eq!(claim_mode_keys(old), ["execution.savepoint-restore-mode"]);
        assert_eq!(
            claim_mode_keys(new)[0],
            "execution.state-recovery.claim-mode"
        );
        assert_eq!(savepoint_dir_keys(None), savepoint_dir_keys(new));
    }
}
