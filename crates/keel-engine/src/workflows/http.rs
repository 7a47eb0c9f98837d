//! Outbound calls of `http` steps, behind an SSRF guard: loopback, private,
//! link-local (cloud metadata included), shared and unspecified addresses are
//! refused unless the server allows them. The guard sits in the DNS resolver,
//! so the address checked is the address connected to (no rebinding between
//! check and use); literal IPs are checked before the call; redirects are not
//! followed (a 3xx is not a success).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use keel_core::workflow::HttpRequest;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

/// A call's timeout when the step gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The most of a response body kept as a step's output.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct HttpCaller {
    client: reqwest::Client,
    allow_private: bool,
}

/// Why a call did not succeed; `retry` is false when trying again cannot help.
#[derive(Debug)]
pub struct CallError {
    pub message: String,
    pub retry: bool,
}

impl CallError {
    fn new(message: impl Into<String>, retry: bool) -> Self {
        CallError {
            message: message.into(),
            retry,
        }
    }
}

impl HttpCaller {
    pub fn new(allow_private: bool) -> Self {
        // reqwest is built without a default crypto provider (ring, not aws-lc).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("keel/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HttpCaller {
            client,
            allow_private,
        }
    }

    /// Makes the call; a 2xx answer's body is the output (JSON when it parses,
    /// else text, `null` when empty).
    pub async fn call(&self, request: &HttpRequest) -> Result<Value, CallError> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| CallError::new(format!("invalid url {:?}: {e}", request.url), false))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CallError::new(
                "only http and https urls are allowed",
                false,
            ));
        }
        if let Some(host) = url.host_str() {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>()
                && !self.allow_private
                && !is_public(ip)
            {
                return Err(CallError::new(refused(ip), false));
            }
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| CallError::new(format!("invalid method {:?}", request.method), false))?;
        let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        let mut builder = self.client.request(method, url).timeout(timeout);
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            let message = describe(&e);
            let refused = message.contains("refused by keel");
            CallError::new(message, !refused)
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::new(describe(&e), true))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            // 4xx other than 408/429 will not change by retrying.
            let retry =
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(CallError::new(format!("{status}: {text}"), retry));
        }
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(CallError::new(
                format!(
                    "response of {} bytes is over the limit of {MAX_RESPONSE_BYTES}",
                    bytes.len()
                ),
                false,
            ));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn refused(ip: IpAddr) -> String {
    format!("refused by keel: {ip} is not a public address (see --allow-private-http)")
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
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
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

    #[tokio::test]
    async fn literal_and_resolved_internal_hosts_are_refused() {
        let caller = HttpCaller::new(false);
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]:9/",
            "http://localhost:9/",
        ] {
            let request = HttpRequest {
                method: "GET".into(),
                url: url.into(),
                headers: Default::default(),
                body: None,
                timeout_ms: Some(2000),
            };
            let err = caller.call(&request).await.unwrap_err();
            assert!(
                err.message.contains("refused by keel"),
                "{url}: {}",
                err.message
            );
            assert!(!err.retry, "{url}");
        }
    }
}
