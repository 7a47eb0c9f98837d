//! API tokens (an admin's calls): create, list, revoke.

use keel_api::tokens::{TokenAnswer, TokenCreated, TokenList, TokenRequest};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    /// Creates a token; the answer's `token` is its secret, shown this once.
    pub async fn create_token(&self, request: &TokenRequest) -> Result<TokenCreated, ClientError> {
        self.send(self.http.post(self.url("/tokens")).json(request))
            .await
    }

    pub async fn list_tokens(&self) -> Result<TokenList, ClientError> {
        self.send(self.http.get(self.url("/tokens"))).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenAnswer, ClientError> {
        let url = self.url(&format!("/tokens/{}", seg(id)));
        self.send(self.http.delete(url)).await
    }
}
