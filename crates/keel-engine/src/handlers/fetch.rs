//! A handler's outbound HTTP: only to the origins its settings allow, and
//! through the SSRF guard (no redirects followed: each hop is the handler's
//! own call, checked again). `{{secrets.NAME}}` in a header's value is
//! filled in here from the handler's secrets, which the guest never sees;
//! a call with `connection` carries that OAuth2 connection's
//! `Authorization` header, added here (`crate::connections`): the guest
//! never sees the token either.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_core::handler::Origin;
use keel_core::{ConnectionName, Namespace};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connections::ConnectionService;
use crate::outbound::{Guard, describe};

/// One call's longest wait; the invocation's wall limit bounds it too.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Fetcher {
    pub(super) client: reqwest::Client,
    pub(super) guard: Guard,
    pub(super) origins: std::sync::Arc<[Origin]>,
    /// Bytes of responses this invocation may still read.
    pub(super) response_bytes: u64,
    /// The connections its calls may be made as, in its namespace.
    pub(super) connections: (std::sync::Arc<ConnectionService>, Namespace),
}

#[derive(Deserialize)]
pub(super) struct Request {
    url: String,
    #[serde(default = "get")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    connection: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// `value` with every `{{secrets.NAME}}` replaced (an unknown name is an
/// error: a call must not go out with a placeholder in it).
fn fill(value: &str, secrets: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("{{secrets.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 10..];
        let end = after
            .find("}}")
            .ok_or_else(|| "an unclosed {{secrets. in a header".to_owned())?;
        let name = &after[..end];
        let secret = secrets
            .get(name)
            .ok_or_else(|| format!("the handler has no secret {name:?}"))?;
        out.push_str(secret);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Fetcher {
    pub(super) async fn fetch(
        &mut self,
        request: Request,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Value, String> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| format!("{:?} is not a URL: {e}", request.url))?;
        if !self.origins.iter().any(|o| o.allows(&url)) {
            let origin = url.origin().ascii_serialization();
            return Err(format!("{origin} is not in the handler's allow_http"));
        }
        self.guard.check_url(&url)?;
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("{:?} is not an HTTP method", request.method))?;
        let authorization = match &request.connection {
            Some(name) => {
                if request
                    .headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("authorization"))
                {
                    return Err(
                        "a call as a connection carries its Authorization header; set none"
                            .to_owned(),
                    );
                }
                let name = ConnectionName::new(name).map_err(|e| e.message)?;
                let (connections, namespace) = &self.connections;
                Some(
                    connections
                        .authorization(namespace, &name, &url)
                        .await
                        .map_err(|e| e.message)?,
                )
            }
            None => None,
        };
        let mut call = self.client.request(method, url).timeout(CALL_TIMEOUT);
        if let Some(value) = authorization {
            call = call.header("authorization", value);
        }
        for (name, value) in &request.headers {
            call = call.header(name.as_str(), fill(value, secrets)?);
        }
        if let Some(body) = request.body {
            call = call.body(body);
        }
        let response = call.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let headers: BTreeMap<String, String> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        // One byte past what is left, at most: the sandbox counts what it
        // is given and stops the guest past its limit.
        let room = usize::try_from(self.response_bytes.saturating_add(1)).unwrap_or(usize::MAX);
        let (body, _cut) = crate::outbound::read_bounded(response, room)
            .await
            .map_err(|e| describe(&e))?;
        self.response_bytes = self.response_bytes.saturating_sub(body.len() as u64);
        Ok(json!({
            "status": status,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_fill_their_placeholders_and_unknown_ones_refuse() {
        let secrets = BTreeMap::from([("TOKEN".to_owned(), "s3cr3t".to_owned())]);
        assert_eq!(
            fill("Bearer {{secrets.TOKEN}}", &secrets).unwrap(),
            "Bearer s3cr3t"
        );
        assert_eq!(fill("plain", &secrets).unwrap(), "plain");
        assert!(
            fill("{{secrets.NOPE}}", &secrets)
                .unwrap_err()
                .contains("NOPE")
        );
        assert!(fill("{{secrets.TOKEN", &secrets).is_err());
    }
}
