//! The version of etcd a test cluster runs, as its members report it.

use std::fmt;

/// An etcd server version, as a member reports it in its status (`3.7.3`). Tests use it
/// to say which versions they expect what from: `version >= ServerVersion::new(3, 5, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// The major version (3).
    pub major: u32,
    /// The minor version, the release line (4 to 7).
    pub minor: u32,
    /// The patch release.
    pub patch: u32,
}

impl ServerVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> ServerVersion {
        ServerVersion {
            major,
            minor,
            patch,
        }
    }

    /// Reads `3.7.3`, also with a suffix (`3.7.0-rc.0` is 3.7.0); `None` if it is not
    /// three numbers.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let core = text.trim().split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = ServerVersion::new(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(
            ServerVersion::parse("3.4.23"),
            Some(ServerVersion::new(3, 4, 23))
        );
        assert_eq!(
            ServerVersion::parse("3.7.0-rc.0"),
            Some(ServerVersion::new(3, 7, 0))
        );
        for bad in ["", "3.7", "3.7.x", "3.7.3.1", "v3.7.3"] {
            assert_eq!(ServerVersion::parse(bad), None, "{bad:?}");
        }
        assert!(ServerVersion::new(3, 4, 23) < ServerVersion::new(3, 5, 0));
        assert_eq!(ServerVersion::new(3, 6, 16).to_string(), "3.6.16");
    }
}
