//! Certificates for TLS test clusters, made in this process (rcgen, ECDSA P-256): an
//! authority per cluster, one certificate its members serve and dial each other with, and
//! client certificates on request, including expired ones and ones of another authority.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::error::LaunchError;
use crate::Tls;

/// A certificate authority made for a test run.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM. `Debug` shows the certificate's size and
/// redacts the key.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, PEM.
    pub certificate: String,
    /// Its private key, PEM.
    pub key: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field(
                "certificate",
                &format_args!("<{} bytes>", self.certificate.len()),
            )
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// How long a certificate lasts: from a day ago for a year, or a year that ended
/// yesterday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid now.
    Current,
    /// Expired yesterday.
    Expired,
}

fn failed(what: &str, e: rcgen::Error) -> LaunchError {
    LaunchError::Certificates(format!("{what}: {e}"))
}

impl Authority {
    /// A new authority, `common_name` its subject.
    pub fn new(common_name: &str) -> Result<Authority, LaunchError> {
        let key = KeyPair::generate().map_err(|e| failed("the authority's key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, Validity::Current);
        let issuer = CertifiedIssuer::self_signed(params, key)
            .map_err(|e| failed("the authority's certificate", e))?;
        Ok(Authority { issuer })
    }

    /// The authority's certificate, PEM: what clients and members trust.
    pub fn certificate(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for a member: `127.0.0.1`, `::1` and `localhost`, for serving and for
    /// dialling its peers.
    pub fn member(&self) -> Result<Identity, LaunchError> {
        self.issue(
            "etcd-member",
            &["127.0.0.1", "::1", "localhost"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Validity::Current,
        )
    }

    /// A client certificate whose common name is `user` (the user etcd takes it for when
    /// auth is on and the member checks client certificates).
    pub fn client(&self, user: &str, validity: Validity) -> Result<Identity, LaunchError> {
        self.issue(user, &[], &[ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    /// TLS settings that trust this authority, with `identity` shown when given.
    pub fn tls(&self, identity: Option<&Identity>) -> Tls {
        let tls = Tls::new().ca_certificate(self.certificate());
        match identity {
            Some(id) => tls.identity(id.certificate.clone(), id.key.clone()),
            None => tls,
        }
    }

    fn issue(
        &self,
        common_name: &str,
        names: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
        validity: Validity,
    ) -> Result<Identity, LaunchError> {
        let key = KeyPair::generate().map_err(|e| failed("a key", e))?;
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params =
            CertificateParams::new(names).map_err(|e| failed("a certificate's names", e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        set_validity(&mut params, validity);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| failed("a certificate", e))?;
        Ok(Identity {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
    let day = std::time::Duration::from_secs(86_400);
    let (from, to) = match validity {
        Validity::Current => (now - day, now + 365 * day),
        Validity::Expired => (now - 366 * day, now - day),
    };
    params.not_before = from;
    params.not_after = to;
}

/// Makes an ES256 key pair for etcd's JWT tokens in `dir`; the flag that makes a member
/// sign its tokens with it, valid for `ttl` (whole seconds, at least one).
pub(crate) fn jwt_args(
    dir: &std::path::Path,
    ttl: std::time::Duration,
) -> Result<Vec<String>, LaunchError> {
    let key = KeyPair::generate().map_err(|e| failed("the JWT key", e))?;
    let write = |name: &str, content: String| {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| LaunchError::io(format!("writing {}", path.display()), e))?;
        Ok::<_, LaunchError>(path.display().to_string())
    };
    let private = write("jwt.key", key.serialize_pem())?;
    let public = write("jwt.pub", key.public_key_pem())?;
    Ok(vec![format!(
        "--auth-token=jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl={}s",
        ttl.as_secs().max(1)
    )])
}
