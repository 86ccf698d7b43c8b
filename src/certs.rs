//! Certificates for the admission port: [`generate`] makes a CA and a serving certificate
//! for a Service (every DNS name the API server may use), as `serve --self-signed` needs;
//! [`Ca::generate`], [`Ca::issue`] and [`plan`] are what the `certs` command renews with:
//! the CA stays, only the serving certificate is new, and a new CA is published in the
//! caBundle before anything it signed is served.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A CA certificate or key given as PEM cannot be used.
    #[error("the CA cannot be used: {0}")]
    Ca(String),
    /// The CA expires before the serving certificate would.
    #[error(
        "the CA expires at {ca_expires} (Unix time), before a serving certificate valid for {validity:?} would; make a new CA (`certs --new-ca`) first"
    )]
    CaExpiresFirst {
        /// The CA's notAfter, seconds since the epoch.
        ca_expires: i64,
        /// The serving certificate's lifetime asked for.
        validity: Duration,
    },
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
    let ca = Ca::generate(request)?;
    let leaf = ca.issue(request)?;
    Ok(CertBundle {
        ca_pem: ca.cert_pem,
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
    })
}

/// A CA: its certificate and its private key, as PEM.
#[derive(Clone)]
pub struct Ca {
    /// The CA certificate: what the caBundle holds.
    pub cert_pem: String,
    /// Its private key: kept where only its owner reads it, to sign the next serving
    /// certificate.
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A serving certificate and its private key, as PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA for `request`'s Service, valid ten times as long as its
    /// serving certificates.
    pub fn generate(request: &CertRequest) -> Result<Ca, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{} CA", request.service));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, request.validity * 10);
        let key = KeyPair::generate()?;
        let ca = CertifiedIssuer::self_signed(params, &key)?;
        Ok(Ca {
            cert_pem: ca.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA read back from its PEM certificate and key; refused when the key does not
    /// belong to the certificate or the certificate is no CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::Ca(format!("key: {e}")))?;
        let der = first_der(cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertError::Ca(format!("certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(CertError::Ca("the certificate is not a CA".into()));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CertError::Ca(
                "the key does not belong to the certificate".into(),
            ));
        }
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// The CA's notAfter, seconds since the epoch.
    pub fn not_after(&self) -> Result<i64, CertError> {
        let der = first_der(&self.cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertError::Ca(format!("certificate: {e}")))?;
        Ok(cert.validity().not_after.timestamp())
    }

    /// A new serving certificate for `request`, with a new key, signed by this CA;
    /// refused when the CA would expire first.
    pub fn issue(&self, request: &CertRequest) -> Result<Leaf, CertError> {
        let ca_expires = self.not_after()?;
        let ends = time::OffsetDateTime::now_utc() + request.validity;
        if ends.unix_timestamp() > ca_expires {
            return Err(CertError::CaExpiresFirst {
                ca_expires,
                validity: request.validity,
            });
        }
        let ca_key =
            KeyPair::from_pem(&self.key_pem).map_err(|e| CertError::Ca(format!("key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
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
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DER of the first certificate in `pem`.
fn first_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertError::Ca(format!("not a PEM certificate: {e}")))?;
    Ok(block.contents)
}

/// Whether the first certificate of `leaf_pem` carries a valid signature of the first
/// certificate of `ca_pem`; false when either does not parse.
pub fn signed_by(leaf_pem: &str, ca_pem: &str) -> bool {
    let (Ok(leaf), Ok(ca)) = (first_der(leaf_pem), first_der(ca_pem)) else {
        return false;
    };
    let (Ok((_, leaf)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(&leaf),
        x509_parser::parse_x509_certificate(&ca),
    ) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// What a certificates directory holds before a `certs` run, as [`plan`] needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirState {
    /// A usable CA: `ca.crt` with its key `ca.key`.
    pub ca: bool,
    /// A `ca.crt` is there (usable or not: older releases never wrote the key).
    pub ca_cert: bool,
    /// A serving certificate `tls.crt` with its key is there.
    pub leaf: bool,
    /// That serving certificate is signed by the CA in `ca.crt`.
    pub leaf_signed_by_ca: bool,
    /// A `previous-ca.crt` is there.
    pub previous: bool,
}

/// What a `certs` run does, from [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Make a new CA; the one in `ca.crt`, if any, becomes `previous-ca.crt`.
    pub new_ca: bool,
    /// Issue a new serving certificate (else the one there keeps serving).
    pub issue: bool,
    /// Keep `previous-ca.crt` and publish it in the caBundle beside the CA (else delete
    /// it).
    pub keep_previous: bool,
}

/// Decides a `certs` run so that the API server trusts every certificate the pods may
/// serve at any moment of a renewal, given that the pods see a new Secret up to about a
/// minute after the webhook configurations see a new caBundle (or before: the two are
/// separate objects).
///
/// - Renewal (a usable CA, no `new_ca`): the CA stays and the caBundle does not change;
///   only the serving certificate is new. A previous CA is published as long as the
///   serving certificate being replaced is not the CA's own (the renewal right after a
///   CA change), and dropped after that.
/// - A new CA (`new_ca`, no usable CA, or none at all) while a serving certificate of
///   the old CA is there: the new CA is staged, published beside the old one, and the
///   serving certificate is kept. Once that caBundle is applied, the next run issues a
///   serving certificate from the new CA.
/// - A first run: a new CA and a serving certificate from it.
pub fn plan(state: DirState, new_ca: bool) -> Plan {
    if state.ca && !new_ca {
        return Plan {
            new_ca: false,
            issue: true,
            keep_previous: state.previous && !(state.leaf && state.leaf_signed_by_ca),
        };
    }
    let staged = state.ca_cert && state.leaf && state.leaf_signed_by_ca;
    Plan {
        new_ca: true,
        issue: !staged,
        keep_previous: staged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_request() -> CertRequest {
        CertRequest {
            service: "savepoint-webhook".into(),
            namespace: "savepoint-webhook".into(),
            extra_dns: vec![],
            ips: vec![],
            validity: Duration::from_secs(3600),
        }
    }

    fn mk_state(ca: bool, leaf_signed_by_ca: bool, previous: bool) -> DirState {
        DirState {
            ca,
            ca_cert: ca,
            leaf: true,
            leaf_signed_by_ca,
            previous,
        }
    }

    #[test]
    fn a_ca_read_back_signs_serving_certificates_that_verify_against_it() {
        let ca = Ca::generate(&mk_request()).unwrap();
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let leaf = again.issue(&mk_request()).unwrap();
        assert!(signed_by(&leaf.cert_pem, &ca.cert_pem));
        let other = Ca::generate(&mk_request()).unwrap();
        assert!(!signed_by(&leaf.cert_pem, &other.cert_pem));
        assert!(!signed_by("not a certificate", &ca.cert_pem));
    }

    #[test]
    fn a_ca_with_a_key_not_its_own_is_refused() {
        let ca = Ca::generate(&mk_request()).unwrap();
        let other = Ca::generate(&mk_request()).unwrap();
        let err = Ca::from_pem(&ca.cert_pem, &other.key_pem).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let leaf = ca.issue(&mk_request()).unwrap();
        let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn a_serving_certificate_outliving_its_ca_is_refused() {
        let ca = Ca::generate(&mk_request()).unwrap();
        let mut long = mk_request();
        long.validity = Duration::from_secs(3600 * 11);
        let err = ca.issue(&long).unwrap_err();
        assert!(matches!(err, CertError::CaExpiresFirst { .. }), "{err}");
    }

    #[test]
    fn a_renewal_keeps_the_ca_and_publishes_a_previous_one_until_its_certificate_is_replaced() {
        assert_eq!(
            plan(mk_state(true, true, false), false),
            Plan {
                new_ca: false,
                issue: true,
                keep_previous: false
            }
        );
        // Right after a CA change: the certificate being replaced is the previous CA's.
        assert_eq!(
            plan(mk_state(true, false, true), false),
            Plan {
                new_ca: false,
                issue: true,
                keep_previous: true
            }
        );
        // The renewal after that: the previous CA has signed nothing served any more.
        assert_eq!(
            plan(mk_state(true, true, true), false),
            Plan {
                new_ca: false,
                issue: true,
                keep_previous: false
            }
        );
    }

    #[test]
    fn a_new_ca_is_staged_while_the_old_one_signed_what_is_served() {
        let staged = Plan {
            new_ca: true,
            issue: false,
            keep_previous: true,
        };
        assert_eq!(plan(mk_state(true, true, false), true), staged);
        // Older releases wrote ca.crt without its key: the CA cannot sign, so a new one
        // is staged the same way.
        let legacy = DirState {
            ca: false,
            ..mk_state(true, true, false)
        };
        assert_eq!(plan(legacy, false), staged);
    }

    #[test]
    fn a_first_run_makes_a_ca_and_a_serving_certificate() {
        let empty = DirState {
            ca: false,
            ca_cert: false,
            leaf: false,
            leaf_signed_by_ca: false,
            previous: false,
        };
        assert_eq!(
            plan(empty, false),
            Plan {
                new_ca: true,
                issue: true,
                keep_previous: false
            }
        );
    }
}
