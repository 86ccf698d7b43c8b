//! Reads of `file` locations on threads of their own: [`FileReader::read_header`].
//!
//! Any step of a local read can block for good: resolving links or opening on a hung
//! network mount, opening a FIFO. Such a read must not run on tokio's blocking pool, which
//! a few hundred stuck reads exhaust (every later check then times out) and which the
//! runtime waits for at shutdown. So:
//!
//! - each read runs on a detached thread that nothing joins; the caller waits for it at
//!   most until its deadline, and the process exits without it;
//! - a read holds one of its file root's [`SLOTS_PER_ROOT`] slots until its thread returns,
//!   stuck or not: at most that many threads per root, and the stuck reads of one root
//!   leave the slots of the others free;
//! - a path whose earlier read has not returned is not read again until it does, so the
//!   checks of one stuck location take one slot, not one per retry;
//! - the file is opened with `O_NONBLOCK` and anything but a regular file is refused
//!   before a byte is read, so a FIFO or a device never blocks a read.
//!
//! A read that gets no slot, or no answer, by its deadline is [`ReadError::Failed`]
//! ("could not check"), saying which.

use std::collections::HashMap;
use std::fs::{FileType, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Semaphore, oneshot};

use super::fmt_duration;
use super::header::{FileKind, HEADER_LEN};
use super::store::ReadError;

/// Reads of one file root that may run at once, counting those that never returned.
pub const SLOTS_PER_ROOT: usize = 16;

/// A directory `file` locations may be read under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRoot {
    /// Absolute, as configured.
    pub given: PathBuf,
    /// With links resolved.
    pub canonical: PathBuf,
}

#[derive(Debug)]
struct Root {
    root: FileRoot,
    slots: Arc<Semaphore>,
}

/// Reads `file` targets under the configured roots, on bounded threads of their own.
#[derive(Debug)]
pub struct FileReader {
    roots: Vec<Root>,
    canonical: Arc<[PathBuf]>,
    running: Arc<Mutex<HashMap<PathBuf, Instant>>>,
}

/// A path with a read in progress; dropped when the read returns or is never started.
struct Running {
    paths: Arc<Mutex<HashMap<PathBuf, Instant>>>,
    path: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.paths).remove(&self.path);
    }
}

impl FileReader {
    /// A reader for `roots`, each with [`SLOTS_PER_ROOT`] slots.
    pub fn new(roots: Vec<FileRoot>) -> Self {
        Self {
            canonical: roots.iter().map(|r| r.canonical.clone()).collect(),
            roots: roots
                .into_iter()
                .map(|root| Root {
                    root,
                    slots: Arc::new(Semaphore::new(SLOTS_PER_ROOT)),
                })
                .collect(),
            running: Arc::default(),
        }
    }

    /// Reads the first [`HEADER_LEN`] bytes of the regular file at `path` (fewer when it
    /// is shorter), after checking that it resolves under a root; gives up at `deadline`.
    pub async fn read_header(
        &self,
        path: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, ReadError> {
        self.read_prefix(path, HEADER_LEN as u64, deadline).await
    }

    /// Reads the regular file at `path` up to `limit` bytes, like [`Self::read_header`].
    pub async fn read_prefix(
        &self,
        path: &Path,
        limit: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, ReadError> {
        let lexical = path.to_path_buf();
        let roots = self.canonical.clone();
        self.run(path, deadline, move || {
            read_blocking(&lexical, &roots, limit)
        })
        .await?
    }

    /// The size of the regular file at `path`, or why there is none; resolves `path`
    /// under the roots as a read does, on the same bounded threads.
    pub async fn size(
        &self,
        path: &Path,
        deadline: tokio::time::Instant,
    ) -> Result<u64, ReadError> {
        let lexical = path.to_path_buf();
        let roots = self.canonical.clone();
        self.run(path, deadline, move || size_blocking(&lexical, &roots))
            .await?
    }

    /// Runs `job`, a read of `path`, on a thread of its own once `path`'s root has a free
    /// slot; the slot stays taken until `job` returns, even after `deadline` has freed the
    /// caller.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        path: &Path,
        deadline: tokio::time::Instant,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ReadError> {
        let started = Instant::now();
        let root = self
            .root_of(path)
            .ok_or_else(|| ReadError::Failed("not under an allowed root".to_string()))?;
        let running = self.claim(path)?;
        let slot = match tokio::time::timeout_at(deadline, root.slots.clone().acquire_owned()).await
        {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(ReadError::Failed("internal error: no slots".to_string())),
            Err(_) => {
                return Err(ReadError::Failed(format!(
                    "no read slot under {} came free in {}: its {SLOTS_PER_ROOT} reads have not returned (a hung mount?)",
                    root.root.given.display(),
                    fmt_duration(started.elapsed())
                )));
            }
        };
        let (answer, answered) = oneshot::channel();
        std::thread::Builder::new()
            .name("verify-file-read".to_string())
            .spawn(move || {
                let value = job();
                drop(running);
                drop(slot);
                let _ = answer.send(value);
            })
            .map_err(|e| ReadError::Failed(format!("cannot start a read: {e}")))?;
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ReadError::Failed(
                "internal error: the read ended without an answer".to_string(),
            )),
            Err(_) => Err(ReadError::Failed(format!(
                "timed out after {}: the read did not return (a hung mount?)",
                fmt_duration(started.elapsed())
            ))),
        }
    }

    /// The innermost root `path` lies under, as configured or resolved.
    fn root_of(&self, path: &Path) -> Option<&Root> {
        self.roots
            .iter()
            .filter_map(|r| {
                [&r.root.given, &r.root.canonical]
                    .into_iter()
                    .filter(|dir| path.starts_with(dir))
                    .map(|dir| dir.components().count())
                    .max()
                    .map(|depth| (depth, r))
            })
            .max_by_key(|(depth, _)| *depth)
            .map(|(_, r)| r)
    }

    /// Marks `path` as being read, unless an earlier read of it has not returned.
    fn claim(&self, path: &Path) -> Result<Running, ReadError> {
        let mut running = lock(&self.running);
        if let Some(since) = running.get(path) {
            return Err(ReadError::Failed(format!(
                "an earlier read of it has not returned after {} (a hung mount?)",
                fmt_duration(since.elapsed())
            )));
        }
        running.insert(path.to_path_buf(), Instant::now());
        Ok(Running {
            paths: self.running.clone(),
            path: path.to_path_buf(),
        })
    }
}

/// Resolves `path` and checks that it stays under `roots`.
fn resolve_under(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, ReadError> {
    let resolved = std::fs::canonicalize(path).map_err(|e| io_error(&e))?;
    if !roots.iter().any(|r| resolved.starts_with(r)) {
        return Err(ReadError::Failed(format!(
            "{} resolves to {}, outside the allowed roots",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// The size of the regular file `path` resolves to under `roots`.
fn size_blocking(path: &Path, roots: &[PathBuf]) -> Result<u64, ReadError> {
    let resolved = resolve_under(path, roots)?;
    let meta = std::fs::metadata(&resolved).map_err(|e| io_error(&e))?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    Ok(meta.len())
}

/// Resolves `path`, checks it stays under `roots`, opens it without blocking and reads at
/// most `limit` bytes from its start if it is a regular file.
fn read_blocking(path: &Path, roots: &[PathBuf], limit: u64) -> Result<Vec<u8>, ReadError> {
    let resolved = resolve_under(path, roots)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&resolved)
        .map_err(|err| {
            // A socket cannot be opened at all: name what it is rather than the error.
            match std::fs::symlink_metadata(&resolved) {
                Ok(meta) if !meta.is_file() && !meta.is_symlink() => {
                    ReadError::NotRegular(kind(meta.file_type()))
                }
                _ => io_error(&err),
            }
        })?;
    let meta = file.metadata().map_err(|e| io_error(&e))?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    let capacity = usize::try_from(meta.len().min(limit)).unwrap_or(HEADER_LEN);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(&e))?;
    Ok(bytes)
}

fn io_error(err: &std::io::Error) -> ReadError {
    match err.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => ReadError::Missing,
        _ => ReadError::Failed(format!("cannot read it: {err}")),
    }
}

fn kind(file_type: FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_fifo() {
        FileKind::Fifo
    } else if file_type.is_socket() {
        FileKind::Socket
    } else if file_type.is_char_device() {
        FileKind::CharDevice
    } else if file_type.is_block_device() {
        FileKind::BlockDevice
    } else {
        FileKind::Other
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
