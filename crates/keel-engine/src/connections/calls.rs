//! Calls made as a connection: the `Authorization` header, only for an
//! origin of the integration's `api_base`, refreshed first when the token
//! is about to expire; and the proxy that makes a whole call with it.

use std::time::Duration;

use keel_core::connection::{ConnectionStatus, ProxyAnswer, ProxyRequest, must_refresh};
use keel_core::{ConnectionName, Error, ErrorCode, Namespace};

use super::ConnectionService;
use crate::outbound::{describe, read_bounded};

/// How long a caller waits for a refresh before it is told so.
const REFRESH_WAIT: Duration = Duration::from_secs(20);
/// The most of a proxied answer's body returned.
const MAX_PROXY_BYTES: usize = 1024 * 1024;
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnectionService {
    /// The `Authorization` header value for a call to `url` as the
    /// connection: refused for an origin outside the integration's
    /// `api_base`; a token about to expire is refreshed first (one refresh
    /// across every node, which this call waits for).
    pub async fn authorization(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        url: &url::Url,
    ) -> Result<String, Error> {
        let keys = self.keys()?;
        let mut connection = self.store.connection_get(namespace, name).await?;
        let integration = self
            .store
            .integration_get(namespace, &connection.integration)
            .await?;
        if !integration.spec.check(true)?.may_send_to(url) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "connection {name}'s tokens go only to its integration's api_base; {} is not one",
                    url.origin().ascii_serialization()
                ),
            ));
        }
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut pause = Duration::from_millis(10);
        let mut asked = None;
        loop {
            let t = &connection.tokens;
            if t.status == ConnectionStatus::NeedsReauth {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    format!(
                        "connection {name} needs its end user to connect again: {}",
                        t.error.as_deref().unwrap_or("its tokens were refused")
                    ),
                ));
            }
            if !must_refresh(self.clock.now(), t.expires_at, t.refresh_at) {
                let token = keys.open_value(&connection.sealed_at(false), &t.access_token)?;
                return Ok(format!("{} {token}", scheme_of(&t.token_type)));
            }
            if asked != Some(connection.version) {
                self.request_refresh(&connection).await?;
                asked = Some(connection.version);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorCode::UpstreamFailed,
                    format!(
                        "connection {name}'s refresh did not finish within {} s{}",
                        REFRESH_WAIT.as_secs(),
                        t.error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            connection = self.store.connection_get(namespace, name).await?;
        }
    }

    /// Makes a call as the connection and answers what came back.
    pub async fn proxy(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        request: ProxyRequest,
    ) -> Result<ProxyAnswer, Error> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| Error::invalid(format!("{:?} is not a URL: {e}", request.url)))?;
        self.guard.check_url(&url).map_err(Error::invalid)?;
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::invalid(format!("{:?} is not an HTTP method", request.method)))?;
        if request
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(Error::invalid(
                "a call as a connection carries the connection's Authorization header; set none",
            ));
        }
        let authorization = self.authorization(namespace, name, &url).await?;
        let mut call = self
            .client
            .request(method, url)
            .timeout(PROXY_TIMEOUT)
            .header("authorization", authorization);
        for (k, v) in &request.headers {
            call = call.header(k.as_str(), v.as_str());
        }
        if let Some(body) = request.body {
            call = call.body(body);
        }
        let response = call.send().await.map_err(|e| {
            Error::new(
                ErrorCode::UpstreamFailed,
                format!("the call did not complete: {}", describe(&e)),
            )
        })?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let (body, _) = read_bounded(response, MAX_PROXY_BYTES)
            .await
            .map_err(|e| Error::new(ErrorCode::UpstreamFailed, describe(&e)))?;
        Ok(ProxyAnswer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// `bearer` as providers write it, `Bearer` as the header wants it.
fn scheme_of(token_type: &str) -> &str {
    if token_type.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else {
        token_type
    }
}
