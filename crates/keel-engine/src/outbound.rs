//! Every outbound HTTP call Keel makes (`http` steps, pushes to endpoints)
//! goes through a client built here, behind one SSRF guard: loopback,
//! private, link-local, shared and unspecified addresses are refused unless
//! the server allows private addresses, and cloud metadata addresses are
//! refused always. The guard sits in the DNS resolver, so the address
//! checked is the address connected to (no rebinding between check and
//! use); literal IPs are checked before the call and on every redirect a
//! client follows. Bodies are read up to a bound.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects an endpoint push follows at most.
const MAX_REDIRECTS: usize = 5;

/// The guard's setting, shared by the clients built from it.
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    pub allow_private: bool,
}

impl Guard {
    /// A client whose every connection passes the guard; `follow` lets it
    /// follow up to five redirects, each target checked again.
    pub fn client(self, follow: bool) -> reqwest::Client {
        self.builder(follow).build().unwrap_or_default()
    }

    /// [`Guard::client`]'s builder, for a caller that sets more.
    pub fn builder(self, follow: bool) -> reqwest::ClientBuilder {
        // reqwest is built without a default crypto provider (ring, not aws-lc).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirects = if follow {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match self.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refusal) => attempt.error(refusal),
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        };
        reqwest::Client::builder()
            .redirect(redirects)
            .dns_resolver(Arc::new(GuardedResolver { guard: self }))
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(self, ip: IpAddr) -> bool {
        !is_metadata(ip) && (self.allow_private || is_public(ip))
    }

    /// Checks a url's scheme and, when its host is a literal IP, the IP
    /// (named hosts are checked when resolved).
    pub fn check_url(self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err("only http and https urls are allowed".to_owned());
        }
        if let Some(host) = url.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>()
                && !self.allows(ip)
            {
                return Err(refused(ip));
            }
        }
        Ok(())
    }
}

/// Reads a response's body up to `max` bytes; the rest is not read. The
/// bool says whether it was cut.
pub async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A reqwest error with its causes, which say what actually went wrong.
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The words of every refusal, so a caller can tell one from a failure.
pub const REFUSED: &str = "refused by keel";

fn refused(ip: IpAddr) -> String {
    if is_metadata(ip) {
        return format!("{REFUSED}: {ip} is a cloud metadata address");
    }
    format!("{REFUSED}: {ip} is not a public address (see --allow-private-http)")
}

/// Cloud metadata services (AWS, GCP, Azure, OpenStack: 169.254.169.254;
/// AWS over IPv6; Alibaba), never a webhook receiver.
pub fn is_metadata(ip: IpAddr) -> bool {
    const V4: [Ipv4Addr; 2] = [
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(100, 100, 100, 200),
    ];
    const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    match ip {
        IpAddr::V4(v4) => V4.contains(&v4),
        IpAddr::V6(v6) => v6 == V6 || v6.to_ipv4_mapped().is_some_and(|v4| V4.contains(&v4)),
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // 100.64.0.0/10: carrier-grade NAT, often internal.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

struct GuardedResolver {
    guard: Guard,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| guard.allows(a.ip()))
                .collect();
            match (allowed.is_empty(), addrs.first()) {
                (true, Some(first)) => Err(refused(first.ip()).into()),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn metadata_is_refused_even_when_private_addresses_are_allowed() {
        let open = Guard {
            allow_private: true,
        };
        for ip in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            assert!(!open.allows(ip.parse().unwrap()), "{ip}");
        }
        assert!(open.allows("127.0.0.1".parse().unwrap()));
        let url = reqwest::Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(open.check_url(&url).unwrap_err().contains("metadata"));
    }
}
