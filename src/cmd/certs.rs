//! `certs`: write a CA and serving certificate, print the caBundle.

use anyhow::Context;
use base64::Engine;

use crate::certs::{CertRequest, generate};
use crate::cli::CertsArgs;

/// Runs `certs`.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let bundle = generate(&CertRequest {
        service: args.service.clone(),
        namespace: args.namespace.clone(),
        extra_dns: args.extra_dns.clone(),
        ips: args.ips.clone(),
        validity: args.validity,
    })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (file, pem) in [
        ("ca.crt", &bundle.ca_pem),
        ("tls.crt", &bundle.cert_pem),
        ("tls.key", &bundle.key_pem),
    ] {
        let path = args.out.join(file);
        write_private(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "wrote ca.crt, tls.crt and tls.key to {}; caBundle for the webhook configurations:",
        args.out.display()
    );
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(&bundle.ca_pem)
    );
    Ok(())
}

/// Writes `contents` readable by the owner only.
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}
