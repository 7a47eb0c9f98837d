//! Outbound calls of `http` steps, through the SSRF guard of
//! [`crate::outbound`]; redirects are not followed (a 3xx is not a success).
//! A step with `connection` is made as that OAuth2 connection: its
//! `Authorization` header is added here (`crate::connections`).

use std::time::Duration;

use std::sync::Arc;

use keel_core::workflow::HttpRequest;
use keel_core::{ConnectionName, ErrorCode, Namespace, TraceParent};
use serde_json::Value;

use crate::connections::ConnectionService;
use crate::outbound::{Guard, REFUSED, describe, read_bounded};

/// A call's timeout when the step gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The most of a response body kept as a step's output.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct HttpCaller {
    client: reqwest::Client,
    guard: Guard,
    connections: Option<Arc<ConnectionService>>,
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
    pub fn new(guard: Guard, connections: Option<Arc<ConnectionService>>) -> Self {
        HttpCaller {
            client: guard.client(false),
            guard,
            connections,
        }
    }

    /// Makes the call, in the run's trace (`traceparent`) unless the step
    /// sets that header itself; a 2xx answer's body is the output (JSON when
    /// it parses, else text, `null` when empty).
    pub async fn call(
        &self,
        namespace: &Namespace,
        request: &HttpRequest,
        traceparent: Option<&TraceParent>,
    ) -> Result<Value, CallError> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| CallError::new(format!("invalid url {:?}: {e}", request.url), false))?;
        self.guard
            .check_url(&url)
            .map_err(|refusal| CallError::new(refusal, false))?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| CallError::new(format!("invalid method {:?}", request.method), false))?;
        let timeout = Duration::from_millis(request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        let authorization = match &request.connection {
            Some(name) => Some(self.authorization(namespace, name, &url).await?),
            None => None,
        };
        let mut builder = self.client.request(method, url).timeout(timeout);
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        if let Some(context) = traceparent
            && !request
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("traceparent"))
        {
            builder = builder.header("traceparent", context.as_str());
        }
        for (k, v) in &request.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            let message = describe(&e);
            let refused = message.contains(REFUSED);
            CallError::new(message, !refused)
        })?;
        let status = response.status();
        let (bytes, cut) = read_bounded(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| CallError::new(describe(&e), true))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
            // 4xx other than 408/429 will not change by retrying.
            let retry =
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
            return Err(CallError::new(format!("{status}: {text}"), retry));
        }
        if cut {
            return Err(CallError::new(
                format!("response is over the limit of {MAX_RESPONSE_BYTES} bytes"),
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

impl HttpCaller {
    /// The connection's header; tried again only when its refresh did not
    /// finish (a connection that is missing or needs its end user will not
    /// come right by itself).
    async fn authorization(
        &self,
        namespace: &Namespace,
        name: &str,
        url: &reqwest::Url,
    ) -> Result<String, CallError> {
        let connections = self
            .connections
            .as_ref()
            .ok_or_else(|| CallError::new("this node makes no calls as connections", false))?;
        let name = ConnectionName::new(name).map_err(|e| CallError::new(e.message, false))?;
        connections
            .authorization(namespace, &name, url)
            .await
            .map_err(|e| {
                let retry = matches!(
                    e.code,
                    ErrorCode::UpstreamFailed | ErrorCode::StorageUnavailable | ErrorCode::Internal
                );
                CallError::new(e.message, retry)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_and_resolved_internal_hosts_are_refused() {
        let caller = HttpCaller::new(
            Guard {
                allow_private: false,
            },
            None,
        );
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
                connection: None,
            };
            let namespace = Namespace::new("default").unwrap();
            let err = caller.call(&namespace, &request, None).await.unwrap_err();
            assert!(err.message.contains(REFUSED), "{url}: {}", err.message);
            assert!(!err.retry, "{url}");
        }
    }
}
