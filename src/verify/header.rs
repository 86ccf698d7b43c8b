//! The header of Flink's `_metadata` file, parsed without I/O: [`parse`].
//!
//! Flink's `Checkpoints.storeCheckpointMetadata` writes, big-endian, the magic number
//! [`MAGIC`], the metadata format version (an `int`), then the serializer's payload, whose
//! first field is the checkpoint id (a `long`) in every format since version 2.

use std::fmt;
use std::ops::RangeInclusive;

/// Flink's `Checkpoints.HEADER_MAGIC_NUMBER`.
pub const MAGIC: u32 = 0x4960_672d;

/// Bytes read from the start of `_metadata`: magic, version, checkpoint id.
pub const HEADER_LEN: usize = 16;

/// Format versions Flink restores from (`MetadataSerializers`: `MetadataV2Serializer` to
/// `MetadataV6Serializer`; Flink 2.2 writes 6).
pub const RESTORABLE_VERSIONS: RangeInclusive<i32> = 2..=6;

/// Format version 1 (Flink 1.1 and 1.2): Flink still recognizes it, only to refuse it.
pub const RETIRED_VERSION: i32 = 1;

/// What the first bytes of a `_metadata` file say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// A Flink metadata file of a restorable format.
    Flink {
        /// Metadata format version.
        version: i32,
        /// The checkpoint id stored in it.
        checkpoint_id: i64,
    },
    /// Not a Flink metadata file, or a damaged one.
    NotFlink(NotFlink),
    /// Flink's magic number, but a format version Flink does not restore from.
    UnknownVersion {
        /// The version found.
        version: i32,
    },
}

/// Why a file is not a usable Flink metadata file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotFlink {
    /// The file is empty.
    Empty,
    /// The file starts with something other than Flink's magic number.
    Magic {
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// The file ends before the header does.
    Truncated {
        /// Length of the file in bytes.
        len: usize,
        /// Whether its first bytes are (a prefix of) Flink's magic number.
        flink_magic: bool,
    },
    /// `_metadata` is not a regular file (and was not read).
    NotRegular {
        /// What it is instead.
        kind: FileKind,
    },
}

/// What a path names when it is not a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "an unknown kind of file",
        })
    }
}

impl fmt::Display for NotFlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFlink::Empty => f.write_str("the file is empty"),
            NotFlink::Magic { found } => write!(
                f,
                "magic number {found:#010x}, where Flink writes {MAGIC:#010x}"
            ),
            NotFlink::Truncated {
                len,
                flink_magic: true,
            } => write!(
                f,
                "the file is truncated: {len} bytes, shorter than Flink's {HEADER_LEN}-byte header"
            ),
            NotFlink::Truncated {
                len,
                flink_magic: false,
            } => write!(
                f,
                "the file is {len} bytes long and does not start with Flink's magic number {MAGIC:#010x}"
            ),
            NotFlink::NotRegular { kind } => write!(f, "{kind}, not a regular file"),
        }
    }
}

/// Parses the first bytes of a `_metadata` file; `bytes` is what a read of the first
/// [`HEADER_LEN`] bytes returned (fewer when the file is shorter).
pub fn parse(bytes: &[u8]) -> Header {
    if bytes.is_empty() {
        return Header::NotFlink(NotFlink::Empty);
    }
    let Some(magic) = be_u32(bytes, 0) else {
        let prefix = MAGIC.to_be_bytes();
        return Header::NotFlink(NotFlink::Truncated {
            len: bytes.len(),
            flink_magic: prefix.starts_with(bytes),
        });
    };
    if magic != MAGIC {
        return Header::NotFlink(NotFlink::Magic { found: magic });
    }
    let truncated = Header::NotFlink(NotFlink::Truncated {
        len: bytes.len(),
        flink_magic: true,
    });
    let Some(version) = be_u32(bytes, 4).map(|v| v as i32) else {
        return truncated;
    };
    if !RESTORABLE_VERSIONS.contains(&version) {
        return Header::UnknownVersion { version };
    }
    match be_u64(bytes, 8) {
        Some(id) => Header::Flink {
            version,
            checkpoint_id: id as i64,
        },
        None => truncated,
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(chunk))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(chunk))
}

/// The checkpoint id a directory name promises: `n` for Flink's `chk-<n>`.
pub fn chk_number(directory: &str) -> Option<i64> {
    let digits = directory.strip_prefix("chk-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
