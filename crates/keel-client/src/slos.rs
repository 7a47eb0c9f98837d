//! A namespace's objectives, measured (`GET /v1/namespaces/{ns}/slos`).

use keel_api::slos::SlosAnswer;

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    /// Each objective of the namespace's queues and topics: its value, the
    /// error budget left, burn rates and alerts.
    pub async fn slos(&self, namespace: &str) -> Result<SlosAnswer, ClientError> {
        let url = self.url(&format!("/namespaces/{}/slos", seg(namespace)));
        self.send(self.http.get(url)).await
    }
}
