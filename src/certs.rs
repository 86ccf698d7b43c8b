//! Certificates for the admission port: [`generate`] makes a CA and a serving certificate
//! for a Service (every DNS name the API server may use), as the `certs` command and
//! `serve --self-signed` need.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What the serving certificate is for.
#[derive(Clone, Debug)]
pub struct CertRequest {
    /// Service name.
    pub service: String,
    /// Service namespace.
    pub namespace: String,
    /// More DNS names.
    pub extra_dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate (the CA gets ten times as long).
    pub validity: Duration,
}

impl CertRequest {
    /// Every DNS name the API server may use for the Service, then the extra ones.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        let mut names = vec![
            s.clone(),
            format!("{s}.{ns}"),
            format!("{s}.{ns}.svc"),
            format!("{s}.{ns}.svc.cluster.local"),
        ];
        for extra in &self.extra_dns {
            if !names.contains(extra) {
                names.push(extra.clone());
            }
        }
        names
    }
}

/// A CA and a serving certificate signed by it, as PEM.
#[derive(Clone, Debug)]
pub struct CertBundle {
    /// The CA certificate: the webhook configurations' `caBundle`.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + lifetime;
}

/// Generates a fresh CA and a serving certificate for `request`.
pub fn generate(request: &CertRequest) -> Result<CertBundle, CertError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{} CA", request.service));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params, request.validity * 10);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(request.dns_names())?;
    params
        .subject_alt_names
        .extend(request.ips.iter().copied().map(SanType::IpAddress));
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{}.svc", request.service, request.namespace),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, request.validity);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(CertBundle {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
