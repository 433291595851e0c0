//! TLS settings as the user gives them ([`Tls`]), checked and loaded once at connect
//! ([`Loaded`]), and the grpcio credentials every channel is built with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// TLS for the connections to etcd: the certificate authorities to trust, the client's own
/// certificate and key (mutual TLS), and the name the servers' certificates must carry.
///
/// Give it to [`ClientBuilder::tls`](crate::ClientBuilder::tls). Every PEM may be given as
/// bytes or as a file, read when the client connects; what cannot be read or is not PEM is
/// refused then with [`Error::InvalidArgument`], naming the file, never its content.
///
/// ```no_run
/// use etcd_blocking::{Client, Tls};
///
/// let client = Client::builder()
///     .endpoints(["https://10.0.0.1:2379", "https://10.0.0.2:2379"])
///     .tls(
///         Tls::new()
///             .ca_file("/etc/etcd/ca.crt")
///             .identity_files("/etc/etcd/client.crt", "/etc/etcd/client.key"),
///     )
///     .connect()?;
/// # Ok::<(), etcd_blocking::Error>(())
/// ```
///
/// `Debug` shows where the key comes from, never the key.
#[derive(Clone, Default)]
pub struct Tls {
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    server_name: Option<String>,
}

/// A PEM given as bytes or as a file.
#[derive(Clone)]
enum Pem {
    Bytes(Arc<Secret>),
    File(PathBuf),
}

impl Tls {
    /// TLS that trusts the system's certificate authorities (gRPC's default roots) and
    /// shows no client certificate.
    pub fn new() -> Tls {
        Tls::default()
    }

    /// Trusts the certificate authorities in this PEM bundle instead of the system's.
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Tls {
        self.ca = Some(Pem::Bytes(Arc::new(Secret(pem.into()))));
        self
    }

    /// Trusts the certificate authorities in this PEM file instead of the system's.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Tls {
        self.ca = Some(Pem::File(path.as_ref().to_owned()));
        self
    }

    /// Shows this client certificate (a PEM chain) and proves it with this private key
    /// (PEM): mutual TLS. A server that checks client certificates with
    /// `--client-cert-auth` takes its common name as the user when auth is on.
    pub fn identity(mut self, certificate: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Tls {
        self.identity = Some((
            Pem::Bytes(Arc::new(Secret(certificate.into()))),
            Pem::Bytes(Arc::new(Secret(key.into()))),
        ));
        self
    }

    /// [`Tls::identity`] from two PEM files.
    pub fn identity_files(mut self, certificate: impl AsRef<Path>, key: impl AsRef<Path>) -> Tls {
        self.identity = Some((
            Pem::File(certificate.as_ref().to_owned()),
            Pem::File(key.as_ref().to_owned()),
        ));
        self
    }

    /// Checks the servers' certificates against this name instead of each endpoint's host:
    /// for certificates that do not name the address the client dials.
    pub fn server_name(mut self, name: impl Into<String>) -> Tls {
        self.server_name = Some(name.into());
        self
    }

    /// Reads and checks every part, once, at connect. Without the `tls` feature it refuses
    /// all TLS: no connection is built from settings it could not honour.
    pub(crate) fn load(&self) -> Result<Loaded> {
        if !cfg!(feature = "tls") {
            return Err(Error::InvalidArgument {
                argument: "TLS",
                reason: "this build of etcd-blocking has no TLS: turn on its cargo feature \
                         `tls` (on by default)"
                    .to_owned(),
            });
        }
        let ca = match &self.ca {
            Some(pem) => Some(pem.read("TLS CA certificate", CERTIFICATE)?),
            None => None,
        };
        let identity = match &self.identity {
            Some((certificate, key)) => Some((
                certificate.read("TLS client certificate", CERTIFICATE)?,
                key.read("TLS client key", PRIVATE_KEY)?,
            )),
            None => None,
        };
        if let Some(name) = &self.server_name {
            let fits = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_:[]*".contains(c));
            if !fits {
                return Err(Error::InvalidArgument {
                    argument: "TLS server name",
                    reason: format!("{name:?} is not a host name or an IP address"),
                });
            }
        }
        Ok(Loaded {
            ca,
            identity,
            server_name: self.server_name.clone(),
        })
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca)
            .field(
                "identity",
                &self.identity.as_ref().map(|(c, k)| (c, k.redacted())),
            )
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Bytes(bytes) => write!(f, "<{} bytes of PEM>", bytes.0.len()),
            Pem::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What every PEM block of a kind starts with.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";
const PRIVATE_KEY: &str = "PRIVATE KEY-----";

impl Pem {
    /// The PEM, read and checked for `marker`; errors name the part and file, never the
    /// bytes (they may be a key).
    fn read(&self, argument: &'static str, marker: &str) -> Result<Arc<Secret>> {
        let (bytes, source) = match self {
            Pem::Bytes(bytes) => (bytes.clone(), "the PEM given".to_owned()),
            Pem::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| Error::InvalidArgument {
                    argument,
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                (Arc::new(Secret(bytes)), path.display().to_string())
            }
        };
        let invalid = |what: &str| Error::InvalidArgument {
            argument,
            reason: format!("{source} {what}"),
        };
        if bytes.0.contains(&0) {
            return Err(invalid("contains a NUL byte, which PEM never does"));
        }
        let text = std::str::from_utf8(&bytes.0).map_err(|_| invalid("is not PEM text"))?;
        if !text.contains(marker) {
            return Err(invalid(&format!("has no PEM block with {marker:?}")));
        }
        Ok(bytes)
    }

    /// The PEM as `Debug` may show a key: where it comes from, not what it is.
    fn redacted(&self) -> String {
        match self {
            Pem::Bytes(_) => "<redacted>".to_owned(),
            Pem::File(path) => path.display().to_string(),
        }
    }
}

/// TLS settings read and checked: what each channel's credentials are built from. (Never
/// made without the `tls` feature, hence never read then.)
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) struct Loaded {
    ca: Option<Arc<Secret>>,
    identity: Option<(Arc<Secret>, Arc<Secret>)>,
    server_name: Option<String>,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl Loaded {
    /// The name certificates are checked against, when it is not the endpoint's host.
    pub(crate) fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Fresh credentials for one channel.
    #[cfg(feature = "tls")]
    pub(crate) fn credentials(&self) -> grpcio::ChannelCredentials {
        let mut builder = grpcio::ChannelCredentialsBuilder::new();
        if let Some(ca) = &self.ca {
            builder = builder.root_cert(ca.0.clone());
        }
        if let Some((certificate, key)) = &self.identity {
            builder = builder.cert(certificate.0.clone(), key.0.clone());
        }
        builder.build()
    }
}

#[cfg(all(test, not(feature = "tls")))]
mod without_the_feature {
    use super::*;

    #[test]
    fn tls_is_refused() {
        let err = Tls::new().load().expect_err("no TLS in this build");
        assert!(err.to_string().contains("feature `tls`"), "{err}");
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n-----END PRIVATE KEY-----\n";

    fn refused(tls: Tls) -> String {
        match tls.load() {
            Err(Error::InvalidArgument { argument, reason }) => format!("{argument}: {reason}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let tls = Tls::new().ca_certificate(CERT).identity(CERT, KEY);
        let shown = format!("{tls:?} {:?}", tls.load().expect("valid"));
        assert!(!shown.contains("secret-key-bytes"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn what_is_not_pem_is_refused_by_name() {
        let reason = refused(Tls::new().ca_certificate("not a certificate"));
        assert!(reason.starts_with("TLS CA certificate"), "{reason}");
        let reason = refused(Tls::new().identity(CERT, "no key here"));
        assert!(reason.starts_with("TLS client key"), "{reason}");
        let reason = refused(Tls::new().identity(KEY, KEY));
        assert!(reason.starts_with("TLS client certificate"), "{reason}");
        let reason = refused(Tls::new().ca_certificate(format!("{CERT}\0")));
        assert!(reason.contains("NUL"), "{reason}");
        // A key that fails a check is never quoted.
        let reason = refused(Tls::new().identity(CERT, "secret-key-bytes\0"));
        assert!(!reason.contains("secret-key-bytes"), "{reason}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let reason = refused(Tls::new().ca_file("/nonexistent/ca.pem"));
        assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
    }

    #[test]
    fn server_names_at_their_extremes() {
        assert!(Tls::new().server_name("").load().is_err());
        assert!(Tls::new().server_name("a\0b").load().is_err());
        assert!(Tls::new().server_name("a b").load().is_err());
        assert!(Tls::new().server_name("x").load().is_ok());
        assert!(Tls::new().server_name("etcd.example.com").load().is_ok());
        assert!(Tls::new().server_name("127.0.0.1").load().is_ok());
    }
}
