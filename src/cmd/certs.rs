//! `certs`: write or renew the CA and serving certificate in a directory, print the
//! caBundle. What a run does is [`crate::certs::plan`]'s; this file reads and writes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

use crate::certs::{Ca, CertRequest, DirState, Plan, plan, signed_by};
use crate::cli::CertsArgs;

/// The files of a certificates directory.
struct Files {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    previous: PathBuf,
}

impl Files {
    fn under(dir: &Path) -> Files {
        Files {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            previous: dir.join("previous-ca.crt"),
        }
    }
}

/// The contents of `path`, `None` when it does not exist.
fn read_if_there(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    write_private(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Runs `certs`.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let request = CertRequest {
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        extra_dns: args.extra_dns.clone(),
        ips: args.ips.clone(),
        validity: args.validity,
    };
    create_private_dir(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let files = Files::under(&args.out);
    let ca_cert = read_if_there(&files.ca_cert)?;
    let ca_key = read_if_there(&files.ca_key)?;
    let ca = match (&ca_cert, &ca_key) {
        (Some(cert), Some(key)) => Some(Ca::from_pem(cert, key).with_context(|| {
            format!(
                "{} and {} (remove both, or pass --new-ca, to make a new CA)",
                files.ca_cert.display(),
                files.ca_key.display()
            )
        })?),
        _ => None,
    };
    let leaf = match (read_if_there(&files.cert)?, files.key.is_file()) {
        (Some(cert), true) => Some(cert),
        _ => None,
    };
    let previous = read_if_there(&files.previous)?;
    let state = DirState {
        ca: ca.is_some(),
        ca_cert: ca_cert.is_some(),
        leaf: leaf.is_some(),
        leaf_signed_by_ca: leaf
            .as_deref()
            .zip(ca_cert.as_deref())
            .is_some_and(|(leaf, ca)| signed_by(leaf, ca)),
        previous: previous.is_some(),
    };
    let decided = plan(state, args.new_ca);
    let (ca, previous) = match ca {
        Some(ca) if !decided.new_ca => (ca, previous),
        _ => {
            let fresh = Ca::generate(&request)?;
            if let Some(old) = &ca_cert {
                write(&files.previous, old)?;
            }
            write(&files.ca_key, &fresh.key_pem)?;
            write(&files.ca_cert, &fresh.cert_pem)?;
            (fresh, ca_cert.clone())
        }
    };
    if decided.issue {
        let leaf = ca.issue(&request)?;
        write(&files.key, &leaf.key_pem)?;
        write(&files.cert, &leaf.cert_pem)?;
    }
    let mut bundle = ca.cert_pem.clone();
    match previous {
        Some(previous) if decided.keep_previous => bundle.push_str(&previous),
        _ => match std::fs::remove_file(&files.previous) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("removing {}", files.previous.display()));
            }
            _ => {}
        },
    }
    eprintln!("{}", report(&decided, &args.out));
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&bundle)
    );
    Ok(())
}

/// What a run did, for stderr; stdout is the caBundle alone.
fn report(decided: &Plan, dir: &Path) -> String {
    let dir = dir.display();
    let what = match (decided.new_ca, decided.issue) {
        (true, true) => format!(
            "made a new CA (ca.crt, ca.key) and a serving certificate signed by it (tls.crt, tls.key) in {dir}"
        ),
        (true, false) => format!(
            "staged a new CA (ca.crt, ca.key) in {dir}; the serving certificate there is still the old CA's. \
             Apply this caBundle (both CAs), then run certs again to issue a serving certificate from the new CA"
        ),
        (false, _) => format!(
            "kept the CA in {dir} and issued a new serving certificate (tls.crt, tls.key) signed by it"
        ),
    };
    let previous = if decided.keep_previous {
        "; the caBundle holds the previous CA too (previous-ca.crt), until the next run"
    } else {
        ""
    };
    format!("{what}{previous}; caBundle for the webhook configurations:")
}

/// Creates `dir` (and its parents) when it is not there, readable by the owner only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `contents` readable by the owner only: into a new file beside `path`, then
/// renamed over it, so that a reader never sees half of it.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    let staging = path.with_file_name(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staging)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&staging, path)
}
