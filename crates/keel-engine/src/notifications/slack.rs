//! Slack: an incoming webhook's POST, or `chat.postMessage` with a bot
//! token, through the SSRF-guarded client. Slack has no idempotency key, so
//! what came of a call is classified by what is certain: refused before it
//! was sent, or answered 429 or 5xx, it goes again (429 after its
//! `Retry-After`); answered 2xx it went (a `chat.postMessage` answer also
//! says `"ok"`); cut with no answer it may have gone (`Unknown`). The pacing
//! (one message a second per Slack channel) is the channel queue's key rate
//! (`keel_core::notification::channel_policy`).

use std::time::{Duration, Instant};

use keel_core::notification::{Dispatch, PROVIDER_TIMEOUT_MS, SlackChannel};
use serde_json::{Value, json};

use super::Sent;
use crate::outbound::{describe, read_bounded};

const TIMEOUT: Duration = Duration::from_millis(PROVIDER_TIMEOUT_MS);
const SLACK_API: &str = "https://slack.com/api";
/// The most of an answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// The longest `Retry-After` honoured: an hour.
const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// Posts one delivery to Slack.
pub(crate) async fn post(
    client: &reqwest::Client,
    channel: &SlackChannel,
    dispatch: &Dispatch,
) -> Sent {
    let content = &dispatch.content;
    let text = content
        .text
        .clone()
        .or_else(|| content.subject.clone())
        .unwrap_or_default();
    let mut body = json!({ "text": text });
    if let Some(blocks) = &content.slack_blocks {
        body["blocks"] = blocks.clone();
    }
    let request = match (&channel.webhook_url, &channel.bot_token) {
        (Some(url), _) => client.post(url),
        (None, Some(token)) => {
            body["channel"] = json!(channel.channel.clone().or(dispatch.to.slack_user.clone()));
            let base = channel.api_url.as_deref().unwrap_or(SLACK_API);
            client
                .post(format!("{}/chat.postMessage", base.trim_end_matches('/')))
                .bearer_auth(token)
        }
        (None, None) => return Sent::Failed("the channel has no Slack address".into(), 0),
    };
    let started = Instant::now();
    let ms = || started.elapsed().as_millis() as u64;
    let response = match request.json(&body).timeout(TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() || e.is_builder() => return Sent::Retry(describe(&e), ms(), None),
        Err(e) => return Sent::Unknown(describe(&e), ms()),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    let answer = match read_bounded(response, MAX_ANSWER).await {
        Ok((body, _)) => String::from_utf8_lossy(&body).into_owned(),
        Err(e) if (200..300).contains(&status) => {
            return Sent::Ok(format!("HTTP {status} ({})", describe(&e)), ms());
        }
        Err(e) => describe(&e),
    };
    let said = format!("HTTP {status}: {}", excerpt(&answer));
    match status {
        200..=299 if channel.bot_token.is_some() => match serde_json::from_str::<Value>(&answer) {
            Ok(v) if v["ok"] == json!(true) => Sent::Ok(said, ms()),
            Ok(v) if v["error"] == json!("ratelimited") => Sent::Retry(said, ms(), retry_after),
            _ => Sent::Failed(said, ms()),
        },
        200..=299 => Sent::Ok(said, ms()),
        429 | 500..=599 => Sent::Retry(said, ms(), retry_after),
        _ => Sent::Failed(said, ms()),
    }
}

fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
