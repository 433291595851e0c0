//! Endpoint strings: what a user may write (with its scheme), and the gRPC target each becomes.

use crate::error::{Error, Result};

/// The scheme an endpoint was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `host:port`: TLS if the client has TLS settings, plaintext if not.
    Bare,
    /// `http://`: plaintext.
    Http,
    /// `https://`: TLS.
    Https,
}

/// Parses one endpoint as a user writes it (`host:port`, `http://host:port`,
/// `https://host:port`, `[::1]:2379`) into its scheme and the `host:port` target gRPC
/// dials.
pub(crate) fn parse(endpoint: &str) -> Result<(Scheme, String)> {
    let invalid = |reason| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    if endpoint.is_empty() {
        return Err(invalid("it is empty"));
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("it contains white space or control characters"));
    }
    let (scheme, rest) = match endpoint.split_once("://") {
        None => (Scheme::Bare, endpoint),
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(_) => return Err(invalid("the scheme must be http://, https:// or none")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            "an endpoint is host:port, with no path, query or user",
        ));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| invalid("it has no :port"))?;
    if host.is_empty() {
        return Err(invalid("it has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(invalid("the port must be a number from 1 to 65535")),
    }
    if host.starts_with('[') {
        let inner = &host[1..host.len() - 1];
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid("the bracketed host is not an IPv6 address"));
        }
    } else if host.contains(':') {
        return Err(invalid(
            "an IPv6 host must be written in brackets, as [::1]:2379",
        ));
    } else if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        return Err(invalid("the host is neither a name nor an IP address"));
    }
    Ok((scheme, format!("{host}:{port}")))
}

/// Splits `host:port` or `[v6]:port` at the port's colon.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, rest) = authority.split_at(close + 1);
        return Some((host, rest.strip_prefix(':')?));
    }
    authority.rsplit_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("127.0.0.1:2379", "127.0.0.1:2379"),
            ("http://127.0.0.1:2379", "127.0.0.1:2379"),
            ("http://localhost:2379/", "localhost:2379"),
            ("[::1]:2379", "[::1]:2379"),
            ("http://[::1]:2379", "[::1]:2379"),
            ("etcd-0.etcd.svc:2379", "etcd-0.etcd.svc:2379"),
            ("https://127.0.0.1:2379", "127.0.0.1:2379"),
            ("https://[::1]:2379/", "[::1]:2379"),
        ];
        for (given, target) in cases {
            assert_eq!(
                parse(given).ok().map(|(_, t)| t).as_deref(),
                Some(target),
                "{given}"
            );
        }
        let scheme = |given| parse(given).map(|(s, _)| s).ok();
        assert_eq!(scheme("a:1"), Some(Scheme::Bare));
        assert_eq!(scheme("http://a:1"), Some(Scheme::Http));
        assert_eq!(scheme("https://a:1"), Some(Scheme::Https));
    }

    #[test]
    fn refused_forms() {
        let cases = [
            "",
            "127.0.0.1",
            "127.0.0.1:",
            ":2379",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:port",
            "https://127.0.0.1:2379/v3",
            "ftp://127.0.0.1:2379",
            "HTTPS://127.0.0.1:2379",
            "http://127.0.0.1:2379/v3",
            "::1:2379",
            "[::1]2379",
            "[zz]:2379",
            "host name:2379",
            "ho$t:2379",
            "127.0.0.1:2379\n",
        ];
        for given in cases {
            let err = parse(given).expect_err(given);
            assert!(
                matches!(&err, Error::InvalidEndpoint { endpoint, .. } if endpoint == given),
                "{given}: {err}"
            );
        }
    }
}
