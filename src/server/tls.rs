//! TLS for the admission port: [`server_config`] builds a rustls config (TLS 1.2+, ALPN
//! `h2` and `http/1.1`) around a [`ReloadingCert`], which [`watch_cert_files`] refreshes
//! from disk when the files change. A broken or half-written pair is refused and logged;
//! the previous certificate keeps serving. [`ReloadingCert::validity`] tells when the
//! certificate now served is valid, for the certificate metrics.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{path} holds no usable {what}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Certificate or private key.
        what: &'static str,
        /// The cause.
        detail: String,
    },
    /// rustls refused the pair (unsupported key, or key not matching the certificate).
    #[error("certificate {cert} and key {key} cannot be used together: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The client CA bundle could not be used.
    #[error("client CA bundle {path} cannot be used: {detail}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, detail: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what,
        detail: detail.to_string(),
    }
}

/// Parses PEM certificates.
pub fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "certificate", "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// When a certificate is valid, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of the validity period (`notBefore`).
    pub not_before: i64,
    /// End of the validity period (`notAfter`).
    pub not_after: i64,
}

impl Validity {
    /// The validity period of a DER certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
        let validity = parsed.validity();
        Ok(Self {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }
}

/// Loads a certificate chain and its key from PEM bytes, checking that they match and that
/// the leaf's validity period can be read.
pub fn certified_key_from_pem(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = parse_certs(cert_path, cert_pem)?;
    Validity::of(&certs[0]).map_err(|e| pem_error(cert_path, "certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| pem_error(key_path, "private key", e))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    CertifiedKey::from_der(certs, key, &provider)
        .map(Arc::new)
        .map_err(|source| TlsError::Pair {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })
}

/// A certificate being served and the validity period of its leaf.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    validity: Option<Validity>,
}

impl Served {
    fn new(key: Arc<CertifiedKey>) -> Self {
        let validity = key
            .end_entity_cert()
            .ok()
            .and_then(|c| Validity::of(c).ok());
        Self { key, validity }
    }
}

/// The serving certificate, swappable while the server runs.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Served>,
}

impl ReloadingCert {
    /// Starts with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Served::new(key)),
        })
    }

    /// Serves `key` for every new handshake from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        let served = Served::new(key);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = served;
    }

    /// The certificate now served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .key
            .clone()
    }

    /// The validity period of the leaf certificate now served; `None` when the key was
    /// built from a certificate whose validity cannot be read (never one loaded by
    /// [`certified_key_from_pem`]).
    pub fn validity(&self) -> Option<Validity> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .validity
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server config: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, the reloading
/// certificate, and client certificates required and verified when `client_ca` is given.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ]);
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in parse_certs(path, &read(path)?)? {
                roots.add(ca).map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Where the serving certificate and key live on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl CertFiles {
    fn read_both(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Loads and checks the pair.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let (cert, key) = self.read_both()?;
        certified_key_from_pem(&self.cert, &cert, &self.key, &key)
    }
}

/// Polls `files` every `interval` and swaps in a changed pair once it loads and matches.
/// Polling the contents (not inotify) follows the kubelet's symlink swaps of mounted
/// Secrets and survives files being replaced in any order.
pub async fn watch_cert_files(files: CertFiles, target: Arc<ReloadingCert>, interval: Duration) {
    let mut last = files.read_both().ok();
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let current = match files.read_both() {
            Ok(pair) => pair,
            Err(err) => {
                report_once(&mut last_error, err.to_string());
                continue;
            }
        };
        if last.as_ref() == Some(&current) {
            continue;
        }
        match certified_key_from_pem(&files.cert, &current.0, &files.key, &current.1) {
            Ok(key) => {
                target.replace(key);
                tracing::info!(cert = %files.cert.display(), "serving a new certificate");
                last = Some(current);
                last_error = None;
            }
            Err(err) => report_once(&mut last_error, err.to_string()),
        }
    }
}

fn report_once(last_error: &mut Option<String>, message: String) {
    if last_error.as_deref() != Some(message.as_str()) {
        tracing::error!(error = %message, "certificate files unusable; the previous certificate keeps serving");
        *last_error = Some(message);
    }
}
