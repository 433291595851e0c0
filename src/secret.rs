//! Bytes that must not leak: private keys, passwords, tokens.

use std::fmt;

/// Bytes that may be a private key, a password or a token: `Debug` redacts them, and they
/// are overwritten with zeros when dropped. Nothing formats them; only the transport
/// reads them, to hand them to gRPC.
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}
