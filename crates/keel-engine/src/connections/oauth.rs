//! The OAuth2 calls Keel makes for a connection (RFC 6749 4.1.3 and 6):
//! the code exchanged after the end user said yes, and a refresh token
//! exchanged for fresh tokens. Both go to the integration's token URL
//! through the SSRF guard, with the client's credentials in the form or as
//! HTTP Basic, and read the answer with `keel_core::connection`. What they
//! log or answer never holds a token. Also the random `state` and the PKCE
//! verifier and challenge (RFC 7636, S256).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_core::connection::{ClientAuth, Refused, Resolved, Tokens, read_token_answer};
use keel_core::{Error, ErrorCode};
use ring::rand::{SecureRandom, SystemRandom};

use crate::outbound::{describe, read_bounded};

/// A token request's longest wait: well inside a refresh job's lease.
pub(super) const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a token endpoint's answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub(super) enum Grant<'a> {
    Code {
        code: &'a str,
        redirect_url: &'a str,
        verifier: Option<&'a str>,
    },
    Refresh {
        refresh_token: &'a str,
    },
}

/// The client's credentials at its provider.
pub(super) struct Client<'a> {
    pub(super) id: &'a str,
    pub(super) secret: &'a str,
    pub(super) auth: ClientAuth,
}

pub(super) async fn token(
    http: &reqwest::Client,
    resolved: &Resolved,
    client: &Client<'_>,
    grant: Grant<'_>,
) -> Result<Tokens, Refused> {
    let mut form: Vec<(&str, &str)> = match &grant {
        Grant::Code {
            code,
            redirect_url,
            verifier,
        } => {
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", *code),
                ("redirect_uri", *redirect_url),
            ];
            if let Some(verifier) = verifier {
                form.push(("code_verifier", *verifier));
            }
            form
        }
        Grant::Refresh { refresh_token } => vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", *refresh_token),
        ],
    };
    let mut call = http
        .post(resolved.token_url.clone())
        .timeout(TOKEN_TIMEOUT)
        .header("accept", "application/json");
    match client.auth {
        ClientAuth::Body => {
            form.push(("client_id", client.id));
            form.push(("client_secret", client.secret));
        }
        ClientAuth::Basic => {
            call = call.basic_auth(client.id, Some(client.secret));
        }
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sent = call
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let response = sent.map_err(|e| unreachable(&describe(&e)))?;
    let status = response.status().as_u16();
    let (bytes, _) = read_bounded(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| unreachable(&describe(&e)))?;
    read_token_answer(status, &bytes)
}

fn unreachable(why: &str) -> Refused {
    Refused {
        message: format!("the token endpoint did not answer: {why}"),
        invalid_grant: false,
        retry: true,
    }
}

/// `application/x-www-form-urlencoded`.
fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// 32 random bytes, base64url: a session's `state`, and a PKCE verifier
/// (43 characters, within RFC 7636's 43 to 128).
pub(super) fn random_token(random: &SystemRandom) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    random
        .fill(&mut bytes)
        .map_err(|_| Error::new(ErrorCode::Internal, "no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `BASE64URL(SHA256(verifier))`.
pub(super) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
