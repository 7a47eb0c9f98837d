//! Webhook sources: a provider's signed HTTP callbacks, verified and turned
//! into events on a topic. This module holds what is pure: the spec and its
//! checks, and each provider's signature scheme written down as data (a
//! [`Recipe`]: which header carries the signatures and how, what the HMAC
//! covers, where the timestamp is, how the secret and the digest are
//! encoded). One verifier in the engine reads any recipe; a provider is a
//! row of the table in [`Verify::recipe`], not a code path.

use serde::{Deserialize, Serialize};

use crate::workflow::expr;
use crate::{Error, TopicName};

/// How far a signed timestamp may be from now, by default: five minutes.
pub const DEFAULT_TOLERANCE_MS: u64 = 300_000;
/// Longest tolerance: a day.
pub const MAX_TOLERANCE_MS: u64 = 24 * 3_600_000;
/// Longest secret, header name, prefix or expression.
pub const MAX_FIELD: usize = 1024;

/// The providers whose signatures Keel checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// standardwebhooks.com (Svix and many others): `webhook-signature`.
    StandardWebhooks,
    Stripe,
    Github,
    Slack,
    Shopify,
    /// Any other HMAC-SHA256 of the body in a header of your choice.
    Hmac,
}

/// How a digest is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Hex,
    Base64,
}

/// How a source checks what it receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub scheme: Scheme,
    /// As the provider shows it (Standard Webhooks: `whsec_` + base64).
    pub secret: String,
    #[serde(default = "default_tolerance")]
    pub tolerance_ms: u64,
    /// `hmac` only: the header with the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac` only: how the digest is written (hex by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `hmac` only: text before the digest in the header (`sha256=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_MS
}

/// A source: where its events go and how their id, key and type are picked
/// out of the request (expressions over `request.headers`, lower-case
/// names, and `request.body`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub topic: TopicName,
    pub verify: Verify,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl SourceSpec {
    /// Checks bounds, the scheme's own needs and that every expression
    /// parses and refers to `request` only.
    pub fn check(&self) -> Result<(), Error> {
        let v = &self.verify;
        if v.secret.is_empty() || v.secret.len() > MAX_FIELD {
            return Err(Error::invalid(format!(
                "verify.secret must be 1 to {MAX_FIELD} bytes"
            )));
        }
        if v.scheme == Scheme::StandardWebhooks && secret_bytes(v).is_none() {
            return Err(Error::invalid(
                "verify.secret of standard_webhooks is whsec_ followed by base64",
            ));
        }
        if !(1000..=MAX_TOLERANCE_MS).contains(&v.tolerance_ms) {
            return Err(Error::invalid(format!(
                "verify.tolerance_ms must be between 1000 and {MAX_TOLERANCE_MS}"
            )));
        }
        let hmac_only = [
            ("header", v.header.is_some()),
            ("encoding", v.encoding.is_some()),
            ("prefix", v.prefix.is_some()),
        ];
        match v.scheme {
            Scheme::Hmac => {
                let header = v.header.as_deref().unwrap_or_default();
                let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                if header.is_empty() || header.len() > 256 || !header.chars().all(valid) {
                    return Err(Error::invalid(
                        "verify.header (the signature's header) is required for hmac: 1 to 256 of a-z, 0-9, '-', '_'",
                    ));
                }
                if v.prefix.as_ref().is_some_and(|p| p.len() > 256) {
                    return Err(Error::invalid("verify.prefix is at most 256 bytes"));
                }
            }
            _ => {
                if let Some((field, _)) = hmac_only.iter().find(|(_, set)| *set) {
                    return Err(Error::invalid(format!(
                        "verify.{field} applies to the hmac scheme only; the others fix it"
                    )));
                }
            }
        }
        for (field, value) in [("key", &self.key), ("type", &self.kind), ("id", &self.id)] {
            let Some(value) = value else { continue };
            if value.len() > MAX_FIELD {
                return Err(Error::invalid(format!(
                    "{field} is at most {MAX_FIELD} bytes"
                )));
            }
            let refs = expr::check(value)
                .map_err(|e| Error::invalid(format!("{field} does not parse: {e}")))?;
            if let Some(other) = refs.roots.iter().find(|r| r.as_str() != "request") {
                return Err(Error::invalid(format!(
                    "{field} may only refer to `request`, not `{other}`"
                )));
            }
        }
        Ok(())
    }
}

/// The key of a secret: Standard Webhooks secrets are `whsec_` + base64 of
/// the key; every other provider uses the secret's own bytes. `None` when a
/// Standard Webhooks secret is malformed.
pub fn secret_bytes(verify: &Verify) -> Option<Vec<u8>> {
    match verify.scheme {
        Scheme::StandardWebhooks => crate::endpoint::whsec_key(&verify.secret),
        _ => Some(verify.secret.as_bytes().to_vec()),
    }
}

/// How the signatures sit in their header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One digest after a fixed prefix (`sha256=<hex>`).
    Single { prefix: String },
    /// Several `v1,<digest>`, separated by spaces (Standard Webhooks).
    Versioned { version: &'static str },
    /// `t=<timestamp>,v1=<digest>,v1=<digest>` (Stripe).
    Pairs {
        timestamp: &'static str,
        signature: &'static str,
    },
}

/// A piece of what the HMAC covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Text(&'static str),
    /// A request header's value.
    Header(&'static str),
    /// The timestamp, wherever the recipe finds it.
    Timestamp,
    Body,
}

/// Where a scheme's timestamp is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampAt {
    Header(&'static str),
    /// In the signature header's pairs.
    Pair,
}

/// One provider's signature scheme, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// The header with the signatures, lower-case.
    pub header: String,
    pub layout: Layout,
    /// What the HMAC-SHA256 covers, in order.
    pub signed: &'static [Part],
    /// Seconds since the epoch, checked against the tolerance.
    pub timestamp: Option<TimestampAt>,
    pub encoding: Encoding,
    /// The event id and type when the source sets no expression for them:
    /// the provider's delivery id, so its retries are duplicates.
    pub id: Option<&'static str>,
    pub kind: Option<&'static str>,
}

impl Verify {
    /// This source's recipe (the table of providers).
    pub fn recipe(&self) -> Recipe {
        let recipe = |header: &str, layout, signed, timestamp, encoding, id, kind| Recipe {
            header: header.to_owned(),
            layout,
            signed,
            timestamp,
            encoding,
            id,
            kind,
        };
        let single = |prefix: &str| Layout::Single {
            prefix: prefix.to_owned(),
        };
        match self.scheme {
            Scheme::StandardWebhooks => recipe(
                "webhook-signature",
                Layout::Versioned { version: "v1" },
                &[
                    Part::Header("webhook-id"),
                    Part::Text("."),
                    Part::Timestamp,
                    Part::Text("."),
                    Part::Body,
                ],
                Some(TimestampAt::Header("webhook-timestamp")),
                Encoding::Base64,
                Some(r#"request.headers["webhook-id"]"#),
                Some("request.body.type"),
            ),
            Scheme::Stripe => recipe(
                "stripe-signature",
                Layout::Pairs {
                    timestamp: "t",
                    signature: "v1",
                },
                &[Part::Timestamp, Part::Text("."), Part::Body],
                Some(TimestampAt::Pair),
                Encoding::Hex,
                Some("request.body.id"),
                Some("request.body.type"),
            ),
            Scheme::Github => recipe(
                "x-hub-signature-256",
                single("sha256="),
                &[Part::Body],
                None,
                Encoding::Hex,
                Some(r#"request.headers["x-github-delivery"]"#),
                Some(r#"request.headers["x-github-event"]"#),
            ),
            Scheme::Slack => recipe(
                "x-slack-signature",
                single("v0="),
                &[
                    Part::Text("v0:"),
                    Part::Timestamp,
                    Part::Text(":"),
                    Part::Body,
                ],
                Some(TimestampAt::Header("x-slack-request-timestamp")),
                Encoding::Hex,
                Some("request.body.event_id"),
                Some("request.body.event.type or request.body.type"),
            ),
            Scheme::Shopify => recipe(
                "x-shopify-hmac-sha256",
                single(""),
                &[Part::Body],
                None,
                Encoding::Base64,
                Some(r#"request.headers["x-shopify-webhook-id"]"#),
                Some(r#"request.headers["x-shopify-topic"]"#),
            ),
            Scheme::Hmac => recipe(
                &self
                    .header
                    .as_deref()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                single(self.prefix.as_deref().unwrap_or_default()),
                &[Part::Body],
                None,
                self.encoding.unwrap_or(Encoding::Hex),
                None,
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(verify: serde_json::Value) -> Result<SourceSpec, String> {
        let spec: SourceSpec = serde_json::from_value(serde_json::json!({
            "topic": "hooks", "verify": verify, "key": "request.body.customer"
        }))
        .map_err(|e| e.to_string())?;
        spec.check().map(|()| spec).map_err(|e| e.message)
    }

    #[test]
    fn every_scheme_reads_from_its_documented_header() {
        let cases = [
            ("standard_webhooks", "whsec_c2VjcmV0", "webhook-signature"),
            ("stripe", "whsec_abc", "stripe-signature"),
            ("github", "s", "x-hub-signature-256"),
            ("slack", "s", "x-slack-signature"),
            ("shopify", "s", "x-shopify-hmac-sha256"),
        ];
        for (scheme, secret, header) in cases {
            let spec = spec(serde_json::json!({"scheme": scheme, "secret": secret})).unwrap();
            assert_eq!(spec.verify.recipe().header, header, "{scheme}");
            assert_eq!(spec.verify.tolerance_ms, DEFAULT_TOLERANCE_MS);
        }
        let hmac = spec(serde_json::json!({"scheme": "hmac", "secret": "s", "header": "X-Sig", "prefix": "sha256=", "encoding": "base64"}))
            .unwrap();
        let recipe = hmac.verify.recipe();
        assert_eq!(recipe.header, "x-sig");
        assert_eq!(recipe.encoding, Encoding::Base64);
        assert_eq!(
            recipe.layout,
            Layout::Single {
                prefix: "sha256=".into()
            }
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_field_named() {
        let refused = [
            (
                serde_json::json!({"scheme": "github", "secret": ""}),
                "secret",
            ),
            (
                serde_json::json!({"scheme": "standard_webhooks", "secret": "plain"}),
                "whsec_",
            ),
            (
                serde_json::json!({"scheme": "hmac", "secret": "s"}),
                "header",
            ),
            (
                serde_json::json!({"scheme": "github", "secret": "s", "header": "x"}),
                "hmac scheme only",
            ),
            (
                serde_json::json!({"scheme": "github", "secret": "s", "tolerance_ms": 5}),
                "tolerance_ms",
            ),
        ];
        for (verify, says) in refused {
            let err = spec(verify.clone()).unwrap_err();
            assert!(err.contains(says), "{verify}: {err}");
        }
        let mut bad = spec(serde_json::json!({"scheme": "github", "secret": "s"})).unwrap();
        bad.key = Some("input.x".into());
        assert!(bad.check().unwrap_err().message.contains("`request`"));
    }

    #[test]
    fn standard_webhooks_secrets_decode_from_base64() {
        let spec =
            spec(serde_json::json!({"scheme": "standard_webhooks", "secret": "whsec_c2VjcmV0"}))
                .unwrap();
        assert_eq!(secret_bytes(&spec.verify).unwrap(), b"secret");
        let github = spec_verify("github", "whsec_c2VjcmV0");
        assert_eq!(secret_bytes(&github).unwrap(), b"whsec_c2VjcmV0");
    }

    fn spec_verify(scheme: &str, secret: &str) -> Verify {
        spec(serde_json::json!({"scheme": scheme, "secret": secret}))
            .unwrap()
            .verify
    }
}
