//! OAuth2 integrations and connections: configure integrations, start a
//! connect session, read and forget connections, make calls as one, and
//! rotate the keys their secrets are sealed with.

use keel_api::connections::{
    ConnectAnswer, ConnectRequest, ConnectionAnswer, ConnectionList, IntegrationAnswer,
    IntegrationList, IntegrationRequest, KeysRotated, ProxyAnswer, ProxyRequest,
};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    fn named_url(&self, namespace: &str, kind: &str, name: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/{kind}/{}",
            seg(namespace),
            seg(name)
        ))
    }

    /// Creates or replaces an integration; its client secret is never
    /// shown again.
    pub async fn put_integration(
        &self,
        namespace: &str,
        name: &str,
        integration: &IntegrationRequest,
    ) -> Result<IntegrationAnswer, ClientError> {
        let url = self.named_url(namespace, "integrations", name);
        self.send(self.http.put(url).json(integration)).await
    }

    pub async fn get_integration(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<IntegrationAnswer, ClientError> {
        let url = self.named_url(namespace, "integrations", name);
        self.send(self.http.get(url)).await
    }

    pub async fn list_integrations(&self, namespace: &str) -> Result<IntegrationList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/integrations", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn delete_integration(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.named_url(namespace, "integrations", name))
            .await
    }

    /// The URL to send an end user to, to connect them.
    pub async fn connect_session(
        &self,
        namespace: &str,
        integration: &str,
        request: &ConnectRequest,
    ) -> Result<ConnectAnswer, ClientError> {
        let url = format!(
            "{}/connect-sessions",
            self.named_url(namespace, "integrations", integration)
        );
        self.send(self.http.post(url).json(request)).await
    }

    pub async fn list_connections(&self, namespace: &str) -> Result<ConnectionList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/connections", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn get_connection(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ConnectionAnswer, ClientError> {
        let url = self.named_url(namespace, "connections", name);
        self.send(self.http.get(url)).await
    }

    pub async fn delete_connection(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.named_url(namespace, "connections", name))
            .await
    }

    /// A call made as the connection; Keel adds its `Authorization`.
    pub async fn call_as(
        &self,
        namespace: &str,
        connection: &str,
        request: &ProxyRequest,
    ) -> Result<ProxyAnswer, ClientError> {
        let url = format!(
            "{}/requests",
            self.named_url(namespace, "connections", connection)
        );
        self.send(self.http.post(url).json(request)).await
    }

    /// Seals every secret again with a new key.
    pub async fn rotate_keys(&self) -> Result<KeysRotated, ClientError> {
        self.send(self.http.post(self.url("/keys/rotate"))).await
    }
}
