//! Handlers and objects' state: upload, read, delete, secrets, test calls;
//! one state key with its version, and pages of an object's state.

use keel_api::handlers::{
    HandlerAnswer, HandlerList, HandlerRequest, InvokeAnswer, InvokeRequest, SecretsRequest,
    StateAnswer, StatePage, StatePut, StateVersion,
};
use keel_core::handler::ObjectRef;

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    /// Uploads a handler: a new version, or the current one when nothing
    /// changed.
    pub async fn put_handler(
        &self,
        namespace: &str,
        name: &str,
        handler: &HandlerRequest,
    ) -> Result<HandlerAnswer, ClientError> {
        let url = self.setting_url(namespace, "handlers", name);
        self.send(self.http.put(url).json(handler)).await
    }

    pub async fn get_handler(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<HandlerAnswer, ClientError> {
        self.send(self.http.get(self.setting_url(namespace, "handlers", name)))
            .await
    }

    pub async fn list_handlers(&self, namespace: &str) -> Result<HandlerList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/handlers", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn delete_handler(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.setting_url(namespace, "handlers", name))
            .await
    }

    /// Replaces the handler's secrets (never readable back).
    pub async fn put_handler_secrets(
        &self,
        namespace: &str,
        name: &str,
        secrets: std::collections::BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let url = format!("{}/secrets", self.setting_url(namespace, "handlers", name));
        let resp = self
            .authorized(self.http.put(url).json(&SecretsRequest { secrets }))
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(Client::error_of(resp).await)
    }

    /// A test call of the current version; nothing is committed.
    pub async fn invoke_handler(
        &self,
        namespace: &str,
        name: &str,
        payload: serde_json::Value,
        object: Option<ObjectRef>,
    ) -> Result<InvokeAnswer, ClientError> {
        let url = format!("{}/invoke", self.setting_url(namespace, "handlers", name));
        let payload = serde_json::value::to_raw_value(&payload)?;
        self.send(self.http.post(url).json(&InvokeRequest { payload, object }))
            .await
    }

    fn state_url(&self, namespace: &str, object: &ObjectRef, key: Option<&str>) -> String {
        let base = format!(
            "/namespaces/{}/objects/{}/{}/state",
            seg(namespace),
            seg(&object.kind),
            seg(&object.key)
        );
        self.url(&match key {
            Some(k) => format!("{base}/{}", seg(k)),
            None => base,
        })
    }

    /// One state key of an object (404 when absent).
    pub async fn get_state(
        &self,
        namespace: &str,
        object: &ObjectRef,
        key: &str,
    ) -> Result<StateAnswer, ClientError> {
        self.send(self.http.get(self.state_url(namespace, object, Some(key))))
            .await
    }

    /// Puts one state key, only over `if_match` when given: its version.
    pub async fn put_state(
        &self,
        namespace: &str,
        object: &ObjectRef,
        key: &str,
        value: serde_json::Value,
        if_match: Option<u64>,
    ) -> Result<u64, ClientError> {
        let value = serde_json::value::to_raw_value(&value)?;
        let mut req = self
            .http
            .put(self.state_url(namespace, object, Some(key)))
            .json(&StatePut { value });
        if let Some(v) = if_match {
            req = req.header("if-match", v.to_string());
        }
        let answer: StateVersion = self.send(req).await?;
        Ok(answer.version)
    }

    /// A page of an object's state in key order, after `cursor`.
    pub async fn list_state(
        &self,
        namespace: &str,
        object: &ObjectRef,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<StatePage, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(p) = prefix {
            query.push(("prefix", p.to_owned()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        self.send(
            self.http
                .get(self.state_url(namespace, object, None))
                .query(&query),
        )
        .await
    }
}
