//! Webhook sources: the client's calls to configure and read them (the
//! ingress itself is for providers, not for this client).

use keel_api::sources::{SourceAnswer, SourceList, SourceRequest};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    fn source_url(&self, namespace: &str, name: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/sources/{}",
            seg(namespace),
            seg(name)
        ))
    }

    /// Creates or replaces a source; its secret is never shown again.
    pub async fn put_source(
        &self,
        namespace: &str,
        name: &str,
        source: &SourceRequest,
    ) -> Result<SourceAnswer, ClientError> {
        let url = self.source_url(namespace, name);
        self.send(self.http.put(url).json(source)).await
    }

    pub async fn get_source(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SourceAnswer, ClientError> {
        self.send(self.http.get(self.source_url(namespace, name)))
            .await
    }

    pub async fn list_sources(&self, namespace: &str) -> Result<SourceList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/sources", seg(namespace)));
        self.send(self.http.get(url)).await
    }
}
