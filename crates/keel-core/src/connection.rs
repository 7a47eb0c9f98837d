//! OAuth2 connections (docs/connections.md): an **integration** is an app's
//! client at a provider (its client id and secret, the provider's URLs and
//! scopes, the API origins its tokens may be sent to); a **connection** is
//! one end user's tokens for an integration, kept fresh by Keel and never
//! handed out. This module is the pure part: the provider templates, an
//! integration's checks, the authorize URL, how a token endpoint's answer
//! reads, and when a token is refreshed.

mod requests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::handler::Origin;
pub use requests::{ConnectAnswer, ConnectRequest, ProxyAnswer, ProxyRequest};

use crate::{Error, Timestamp, TopicName};

/// How long a connect session's `state` is good for.
pub const SESSION_TTL_MS: u64 = 10 * 60_000;
/// A token without `expires_in` is refreshed this long after it was
/// obtained: a provider that does not say must not mean "never".
pub const UNKNOWN_LIFETIME_MS: u64 = 3_600_000;
/// Refresh this long before expiry at most (half the lifetime for a short
/// one).
pub const REFRESH_LEAD_MS: u64 = 5 * 60_000;
/// A call waits for a refresh instead of using a token this close to its
/// expiry.
pub const EXPIRY_SKEW_MS: u64 = 30_000;
/// The topic a connection's events go to when its integration names none.
pub const DEFAULT_TOPIC: &str = "keel.connections";
/// Origins one integration's tokens may be sent to, at most.
pub const MAX_API_ORIGINS: usize = 16;
/// Scopes one integration asks for, at most.
pub const MAX_SCOPES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Github,
    Google,
    Slack,
    /// Any OAuth2 provider: `auth_url`, `token_url` and `api_base` given.
    Generic,
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Body,
    /// HTTP Basic with the client id and secret (RFC 6749 2.3.1).
    Basic,
}

/// What a provider's template fills in for an integration that leaves it out.
struct Template {
    auth_url: &'static str,
    token_url: &'static str,
    api_base: &'static [&'static str],
    scope_separator: &'static str,
    extra: &'static [(&'static str, &'static str)],
}

impl Provider {
    fn template(self) -> Option<Template> {
        match self {
            Provider::Github => Some(Template {
                auth_url: "https://github.com/login/oauth/authorize",
                token_url: "https://github.com/login/oauth/access_token",
                api_base: &["https://api.github.com"],
                scope_separator: " ",
                extra: &[],
            }),
            // Google hands out a refresh token only for offline access, and
            // again on a second consent only when asked to prompt.
            Provider::Google => Some(Template {
                auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
                token_url: "https://oauth2.googleapis.com/token",
                api_base: &["https://www.googleapis.com"],
                scope_separator: " ",
                extra: &[("access_type", "offline"), ("prompt", "consent")],
            }),
            Provider::Slack => Some(Template {
                auth_url: "https://slack.com/oauth/v2/authorize",
                token_url: "https://slack.com/api/oauth.v2.access",
                api_base: &["https://slack.com"],
                scope_separator: ",",
                extra: &[],
            }),
            Provider::Generic => None,
        }
    }
}

/// An integration as a client sends it. `client_secret` is taken on a put
/// (sealed apart, `None` in the spec the store keeps) and never shown
/// again; a put without one keeps the stored secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    pub provider: Provider,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The provider's authorize URL; the template's when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// The provider's token URL; the template's when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Origins (`https://api.example.com`) the connections' tokens may be
    /// sent to; the template's when left out. A call "as a connection" to
    /// any other origin is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_base: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// PKCE with S256 (RFC 7636); on unless a provider cannot take it.
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default = "body")]
    pub client_auth: ClientAuth,
    /// Where the provider sends the user back; `{public_url}/oauth/callback`
    /// when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Extra query parameters of the authorize URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
    /// Where `connection.created`, `connection.needs_reauth` and
    /// `connection.deleted` are published; `keel.connections` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub topic: Option<TopicName>,
}

fn yes() -> bool {
    true
}

fn body() -> ClientAuth {
    ClientAuth::Body
}

/// An integration with its template applied and every URL checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub auth_url: url::Url,
    pub token_url: url::Url,
    pub api_base: Vec<Origin>,
    pub scope_separator: &'static str,
    pub authorize_params: BTreeMap<String, String>,
}

impl IntegrationSpec {
    /// Checks everything a put must refuse; `secret_stored` says whether a
    /// put without a secret may keep one.
    pub fn check(&self, secret_stored: bool) -> Result<Resolved, Error> {
        let field = |name: &str, value: &str, max: usize| {
            if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
                Err(Error::invalid(format!(
                    "{name} must be 1 to {max} characters, no control characters"
                )))
            } else {
                Ok(())
            }
        };
        field("client_id", &self.client_id, 512)?;
        match &self.client_secret {
            Some(secret) => field("client_secret", secret, 4096)?,
            None if !secret_stored => {
                return Err(Error::invalid("client_secret is required"));
            }
            None => {}
        }
        if self.scopes.len() > MAX_SCOPES {
            return Err(Error::invalid(format!("at most {MAX_SCOPES} scopes")));
        }
        for scope in &self.scopes {
            field("a scope", scope, 256)?;
            if scope.contains([' ', ',']) {
                return Err(Error::invalid(format!(
                    "scope {scope:?} holds a separator: list each scope on its own"
                )));
            }
        }
        if self.authorize_params.len() > 16 {
            return Err(Error::invalid("at most 16 authorize_params"));
        }
        for (k, v) in &self.authorize_params {
            field("an authorize_params key", k, 64)?;
            field("an authorize_params value", v, 512)?;
            if RESERVED_PARAMS.contains(&k.as_str()) {
                return Err(Error::invalid(format!(
                    "authorize_params may not set {k:?}: Keel sets it"
                )));
            }
        }
        if let Some(url) = &self.redirect_url {
            web_url("redirect_url", url)?;
        }
        let template = self.provider.template();
        let pick = |given: &Option<String>, name: &str, default: Option<&str>| {
            let text = given
                .as_deref()
                .or(default)
                .ok_or_else(|| Error::invalid(format!("a generic integration needs {name}")))?;
            web_url(name, text)
        };
        let auth_url = pick(
            &self.auth_url,
            "auth_url",
            template.as_ref().map(|t| t.auth_url),
        )?;
        let token_url = pick(
            &self.token_url,
            "token_url",
            template.as_ref().map(|t| t.token_url),
        )?;
        let bases: Vec<String> = if self.api_base.is_empty() {
            template
                .as_ref()
                .map(|t| t.api_base.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default()
        } else {
            self.api_base.clone()
        };
        if bases.is_empty() {
            return Err(Error::invalid(
                "a generic integration needs api_base: the origins its tokens may be sent to",
            ));
        }
        if bases.len() > MAX_API_ORIGINS {
            return Err(Error::invalid(format!(
                "api_base lists {} origins; at most {MAX_API_ORIGINS}",
                bases.len()
            )));
        }
        let api_base = bases
            .iter()
            .map(|b| Origin::parse(b.trim_end_matches('/')))
            .collect::<Result<Vec<_>, _>>()?;
        let mut authorize_params: BTreeMap<String, String> = template
            .as_ref()
            .map(|t| {
                t.extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        authorize_params.extend(self.authorize_params.clone());
        Ok(Resolved {
            auth_url,
            token_url,
            api_base,
            scope_separator: template.map_or(" ", |t| t.scope_separator),
            authorize_params,
        })
    }
}

/// Query parameters of the authorize URL that Keel sets itself.
const RESERVED_PARAMS: [&str; 7] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
];

fn web_url(name: &str, text: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(text)
        .map_err(|e| Error::invalid(format!("{name} {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::invalid(format!("{name} must be an http(s) URL")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(format!("{name} must not carry credentials")));
    }
    Ok(url)
}

/// What the authorize URL carries beside the integration.
pub struct Authorize<'a> {
    pub client_id: &'a str,
    pub redirect_url: &'a str,
    pub state: &'a str,
    /// `BASE64URL(SHA256(verifier))`, when the integration uses PKCE.
    pub challenge: Option<&'a str>,
    pub scopes: &'a [String],
}

impl Resolved {
    /// The URL the end user is sent to.
    pub fn authorize_url(&self, a: &Authorize<'_>) -> String {
        let mut url = self.auth_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", a.client_id)
                .append_pair("redirect_uri", a.redirect_url)
                .append_pair("state", a.state);
            if !a.scopes.is_empty() {
                query.append_pair("scope", &a.scopes.join(self.scope_separator));
            }
            if let Some(challenge) = a.challenge {
                query
                    .append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
            for (k, v) in &self.authorize_params {
                query.append_pair(k, v);
            }
        }
        url.into()
    }

    /// Whether a call to `url` may carry this integration's tokens.
    pub fn may_send_to(&self, url: &url::Url) -> bool {
        self.api_base.iter().any(|o| o.allows(url))
    }
}

/// A connection's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Its tokens work, or a refresh will make them work.
    Active,
    /// The provider refused its refresh token: the end user must connect
    /// again.
    NeedsReauth,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "active" => Ok(ConnectionStatus::Active),
            "needs_reauth" => Ok(ConnectionStatus::NeedsReauth),
            other => Err(Error::internal(format!(
                "unknown connection status {other:?}"
            ))),
        }
    }
}

/// A token endpoint's good answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    /// A rotated refresh token; `None` keeps the one the connection has.
    pub refresh_token: Option<String>,
    pub token_type: String,
    /// The scopes granted, as the provider wrote them.
    pub scope: Option<String>,
    pub expires_in_s: Option<u64>,
}

/// Why a token endpoint did not hand out tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    /// The grant itself is dead (RFC 6749 5.2 `invalid_grant`): asking
    /// again cannot help, the end user must connect again.
    pub invalid_grant: bool,
    /// A server error or a rate limit: asking again later may help.
    pub retry: bool,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    /// Slack answers 200 with `ok: false` for an error.
    #[serde(default)]
    ok: Option<bool>,
}

/// Reads a token endpoint's answer (RFC 6749 5.1 and 5.2, and Slack's
/// `ok: false`). The message never holds a token.
pub fn read_token_answer(status: u16, body: &[u8]) -> Result<Tokens, Refused> {
    let refused = |message: String, invalid_grant: bool| Refused {
        message,
        invalid_grant,
        retry: status >= 500 || status == 429,
    };
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(_) => {
            return Err(refused(
                format!("the token endpoint answered {status} without JSON"),
                false,
            ));
        }
    };
    if let Some(error) = answer.error.filter(|_| answer.ok != Some(true)) {
        let description = answer
            .error_description
            .map(|d| format!(": {}", clip(&d)))
            .unwrap_or_default();
        let invalid_grant = matches!(error.as_str(), "invalid_grant" | "invalid_refresh_token");
        return Err(refused(
            format!(
                "the token endpoint refused ({status}): {}{description}",
                clip(&error)
            ),
            invalid_grant,
        ));
    }
    if !(200..300).contains(&status) || answer.ok == Some(false) {
        return Err(refused(
            format!("the token endpoint answered {status}"),
            false,
        ));
    }
    let access_token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            refused(
                "the token endpoint's answer has no access_token".into(),
                false,
            )
        })?;
    // Some providers send `expires_in` as a string.
    let expires_in_s = match answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok(Tokens {
        access_token,
        refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
        token_type: answer.token_type.unwrap_or_else(|| "Bearer".to_owned()),
        scope: answer.scope,
        expires_in_s,
    })
}

fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// When tokens obtained at `obtained` expire, and when they are refreshed:
/// [`REFRESH_LEAD_MS`] before expiry (half the lifetime of a shorter one);
/// an hour on when the provider gave no lifetime.
pub fn refresh_times(
    obtained: Timestamp,
    expires_in_s: Option<u64>,
) -> (Option<Timestamp>, Timestamp) {
    match expires_in_s {
        Some(s) => {
            let lifetime = s.saturating_mul(1000);
            let lead = REFRESH_LEAD_MS.min(lifetime / 2);
            (
                Some(obtained.plus_ms(lifetime)),
                obtained.plus_ms(lifetime - lead),
            )
        }
        None => (None, obtained.plus_ms(UNKNOWN_LIFETIME_MS)),
    }
}

/// Whether a call at `now` must wait for a refresh rather than send the
/// token it has: past the refresh time of a token of unknown lifetime, or
/// within [`EXPIRY_SKEW_MS`] of a known expiry.
pub fn must_refresh(now: Timestamp, expires_at: Option<Timestamp>, refresh_at: Timestamp) -> bool {
    match expires_at {
        Some(expiry) => now.plus_ms(EXPIRY_SKEW_MS) >= expiry,
        None => now >= refresh_at,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn github() -> IntegrationSpec {
        serde_json::from_value(serde_json::json!({
            "provider": "github", "client_id": "abc", "client_secret": "s", "scopes": ["repo", "read:user"]
        }))
        .unwrap()
    }

    #[test]
    fn a_template_fills_what_an_integration_leaves_out() {
        let resolved = github().check(false).unwrap();
        assert_eq!(
            resolved.token_url.as_str(),
            "https://github.com/login/oauth/access_token"
        );
        assert!(resolved.may_send_to(&url::Url::parse("https://api.github.com/user").unwrap()));
        assert!(!resolved.may_send_to(&url::Url::parse("https://evil.example/user").unwrap()));
        assert!(!resolved.may_send_to(&url::Url::parse("http://api.github.com/user").unwrap()));
        let url = resolved.authorize_url(&Authorize {
            client_id: "abc",
            redirect_url: "https://keel.example/oauth/callback",
            state: "st",
            challenge: Some("ch"),
            scopes: &github().scopes,
        });
        let parsed = url::Url::parse(&url).unwrap();
        let query: BTreeMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(query["scope"], "repo read:user");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["state"], "st");
        assert_eq!(query["redirect_uri"], "https://keel.example/oauth/callback");
    }

    #[test]
    fn a_generic_integration_needs_its_urls_and_keel_keeps_its_parameters() {
        let mut spec = github();
        spec.provider = Provider::Generic;
        assert!(spec.check(false).unwrap_err().message.contains("auth_url"));
        spec.auth_url = Some("https://id.example/authorize".into());
        spec.token_url = Some("https://id.example/token".into());
        assert!(spec.check(false).unwrap_err().message.contains("api_base"));
        spec.api_base = vec!["https://api.example/".into()];
        assert!(spec.check(false).is_ok());
        spec.authorize_params.insert("state".into(), "x".into());
        assert!(spec.check(false).is_err());
        spec.authorize_params.clear();
        spec.client_secret = None;
        assert!(spec.check(false).is_err());
        assert!(spec.check(true).is_ok());
        spec.scopes = vec!["a b".into()];
        assert!(spec.check(true).is_err());
    }

    #[test]
    fn token_answers_read_as_the_rfc_and_slack_write_them() {
        let ok = read_token_answer(
            200,
            br#"{"access_token":"at","refresh_token":"rt","expires_in":"3600","token_type":"bearer"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in_s, Some(3600));
        assert_eq!(ok.refresh_token.as_deref(), Some("rt"));
        let dead = read_token_answer(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(dead.invalid_grant && !dead.retry);
        let slack =
            read_token_answer(200, br#"{"ok":false,"error":"invalid_refresh_token"}"#).unwrap_err();
        assert!(slack.invalid_grant);
        let down = read_token_answer(503, b"<html>").unwrap_err();
        assert!(down.retry && !down.invalid_grant);
        assert!(read_token_answer(200, br#"{"token_type":"bearer"}"#).is_err());
    }

    #[test]
    fn a_token_without_a_lifetime_is_refreshed_after_an_hour() {
        let t = Timestamp::from_millis(1_000_000);
        assert_eq!(refresh_times(t, None), (None, t.plus_ms(3_600_000)));
        assert!(!must_refresh(
            t.plus_ms(3_599_999),
            None,
            t.plus_ms(3_600_000)
        ));
        assert!(must_refresh(
            t.plus_ms(3_600_000),
            None,
            t.plus_ms(3_600_000)
        ));
        let (expiry, refresh) = refresh_times(t, Some(3600));
        assert_eq!(expiry, Some(t.plus_ms(3_600_000)));
        assert_eq!(refresh, t.plus_ms(3_300_000));
        // A short lifetime is refreshed half-way.
        assert_eq!(refresh_times(t, Some(60)).1, t.plus_ms(30_000));
        assert!(!must_refresh(t.plus_ms(3_000_000), expiry, refresh));
        assert!(must_refresh(t.plus_ms(3_570_000), expiry, refresh));
    }
}
