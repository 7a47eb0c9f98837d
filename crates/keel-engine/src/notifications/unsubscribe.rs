//! One-click unsubscribe (RFC 8058): an e-mail of a non-critical category
//! to a saved recipient carries `List-Unsubscribe: <{public_url}/v1/
//! unsubscribe/{token}>` and `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`. The token is what it turns off (namespace,
//! recipient, category, channel) signed with HMAC-SHA256 under a key Keel
//! makes once and keeps in the store, so every node signs and checks
//! alike; a POST to the link turns that category off on that channel in the
//! recipient's own preferences. Nothing else is needed to use the link: it
//! is its own authority, and it can do nothing but that.

use base64::Engine as _;
use keel_core::notification::Preferences;
use keel_core::{Error, ErrorCode, Namespace};
use keel_store::Setting;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::NotificationService;

const KEY_NAME: &str = "unsubscribe";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a link turns off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    #[serde(rename = "n")]
    pub namespace: String,
    #[serde(rename = "r")]
    pub recipient: String,
    #[serde(rename = "c")]
    pub category: String,
    #[serde(rename = "h")]
    pub channel: String,
}

fn refused() -> Error {
    Error::new(ErrorCode::NotFound, "no such unsubscribe link")
}

impl NotificationService {
    /// The signing key: made once (32 random bytes) and kept in Keel's own
    /// namespace. Two nodes making it at once both read back the one that
    /// was stored last.
    async fn unsubscribe_key(&self) -> Result<ring::hmac::Key, Error> {
        if let Some(key) = self.unsubscribe_key.get() {
            return Ok(key.clone());
        }
        let keel = Namespace::new(crate::workflows::SYSTEM_NAMESPACE)?;
        let stored = self
            .store
            .setting_get(&keel, Setting::Key, KEY_NAME)
            .await?;
        let stored = match stored {
            Some(stored) => stored,
            None => {
                use ring::rand::SecureRandom as _;
                let mut key = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| Error::internal("no randomness for a key"))?;
                let body = json!({ "key": B64.encode(key) });
                self.store
                    .setting_put(&keel, Setting::Key, KEY_NAME, &body, self.clock.now())
                    .await?;
                self.store
                    .setting_get(&keel, Setting::Key, KEY_NAME)
                    .await?
                    .ok_or_else(|| Error::internal("the unsubscribe key was not kept"))?
            }
        };
        let bytes = stored.body["key"]
            .as_str()
            .and_then(|k| B64.decode(k).ok())
            .ok_or_else(|| Error::internal("a stored key does not read"))?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes);
        Ok(self.unsubscribe_key.get_or_init(|| key).clone())
    }

    /// The link an e-mail carries, when the server knows its public address.
    pub(crate) async fn unsubscribe_link(
        &self,
        what: &Unsubscribe,
    ) -> Result<Option<String>, Error> {
        let Some(base) = &self.public_url else {
            return Ok(None);
        };
        let payload = serde_json::to_vec(what).map_err(|e| Error::internal(e.to_string()))?;
        let payload = B64.encode(payload);
        let tag = ring::hmac::sign(&self.unsubscribe_key().await?, payload.as_bytes());
        Ok(Some(format!(
            "{base}/v1/unsubscribe/{payload}.{}",
            B64.encode(tag.as_ref())
        )))
    }

    /// What a link says, if Keel signed it.
    pub async fn unsubscribe_read(&self, token: &str) -> Result<Unsubscribe, Error> {
        let (payload, tag) = token.split_once('.').ok_or_else(refused)?;
        let tag = B64.decode(tag).map_err(|_| refused())?;
        ring::hmac::verify(&self.unsubscribe_key().await?, payload.as_bytes(), &tag)
            .map_err(|_| refused())?;
        let payload = B64.decode(payload).map_err(|_| refused())?;
        serde_json::from_slice(&payload).map_err(|_| refused())
    }

    /// Follows a link: the category off on the channel in the recipient's
    /// own preferences (which a recipient since deleted no longer has).
    pub async fn unsubscribe(&self, token: &str) -> Result<Unsubscribe, Error> {
        let what = self.unsubscribe_read(token).await?;
        let namespace = Namespace::new(&what.namespace).map_err(|_| refused())?;
        let mut own: Preferences = self
            .preferences_get(&namespace, Some(&what.recipient))
            .await?;
        own.categories
            .entry(what.category.clone())
            .or_default()
            .insert(what.channel.clone(), false);
        self.preferences_put(&namespace, Some(&what.recipient), &own)
            .await?;
        Ok(what)
    }
}
