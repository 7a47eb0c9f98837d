//! Endpoints: the client's calls to configure them, rotate their secrets,
//! read their attempts log and recover what failed.

use keel_api::endpoints::{
    AttemptList, EndpointAnswer, EndpointList, EndpointRequest, RecoverAnswer, RecoverRequest,
    RotatedAnswer,
};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    fn endpoint_url(&self, namespace: &str, name: &str, then: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/endpoints/{}{then}",
            seg(namespace),
            seg(name)
        ))
    }

    /// Creates or changes an endpoint; the answer carries the secret only
    /// when this call made or set it.
    pub async fn put_endpoint(
        &self,
        namespace: &str,
        name: &str,
        endpoint: &EndpointRequest,
    ) -> Result<EndpointAnswer, ClientError> {
        let url = self.endpoint_url(namespace, name, "");
        self.send(self.http.put(url).json(endpoint)).await
    }

    pub async fn get_endpoint(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<EndpointAnswer, ClientError> {
        self.send(self.http.get(self.endpoint_url(namespace, name, "")))
            .await
    }

    pub async fn list_endpoints(&self, namespace: &str) -> Result<EndpointList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/endpoints", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    /// A new secret, shown this once; the old one signs too for a day.
    pub async fn rotate_endpoint_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<RotatedAnswer, ClientError> {
        let url = self.endpoint_url(namespace, name, "/rotate-secret");
        self.send(self.http.post(url)).await
    }

    pub async fn enable_endpoint(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<EndpointAnswer, ClientError> {
        let url = self.endpoint_url(namespace, name, "/enable");
        self.send(self.http.post(url)).await
    }

    /// A page of attempts, newest first (`status`: `succeeded`/`failed`;
    /// `after`: a previous page's `next_cursor`).
    pub async fn endpoint_attempts(
        &self,
        namespace: &str,
        name: &str,
        status: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AttemptList, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = status {
            query.push(("status", s.to_owned()));
        }
        if let Some(a) = after {
            query.push(("after", a.to_owned()));
        }
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        let url = self.endpoint_url(namespace, name, "/attempts");
        self.send(self.http.get(url).query(&query)).await
    }

    /// Sends again every delivery that died since `since` (RFC 3339).
    pub async fn recover_endpoint(
        &self,
        namespace: &str,
        name: &str,
        since: &str,
    ) -> Result<RecoverAnswer, ClientError> {
        let url = self.endpoint_url(namespace, name, "/recover");
        let body = RecoverRequest {
            since: since.to_owned(),
        };
        self.send(self.http.post(url).json(&body)).await
    }
}
