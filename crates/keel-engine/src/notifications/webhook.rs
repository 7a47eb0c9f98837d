//! A webhook channel: the notification goes to one of the namespace's
//! endpoints as a Standard Webhooks message signed with the endpoint's
//! secrets, whose `webhook-id` is the delivery's id, so that a receiver
//! deduplicates a delivery sent again after a crash. The call is bounded by
//! the delivery's lease, whatever the endpoint allows its own messages.

use keel_core::notification::{ChannelSpec, Dispatch, PROVIDER_TIMEOUT_MS};
use keel_core::{Error, ErrorCode, JobId, Namespace};
use serde_json::json;

use super::NotificationService;
use super::Sent;
use crate::endpoints::send;

pub(crate) async fn post(
    client: &reqwest::Client,
    service: &NotificationService,
    namespace: &Namespace,
    (delivery, dispatch): (JobId, &Dispatch),
    spec: &ChannelSpec,
) -> Result<Sent, Error> {
    let Some(webhook) = &spec.webhook else {
        return Ok(Sent::Failed("not a webhook channel".into(), 0));
    };
    let endpoint = match service.endpoints.get(namespace, &webhook.endpoint).await {
        Ok(endpoint) => endpoint,
        Err(e) if e.code == ErrorCode::NotFound => return Ok(Sent::Failed(e.message, 0)),
        Err(e) => return Err(e),
    };
    let body = json!({
        "type": "keel.notification",
        "notification": dispatch.notification,
        "delivery": delivery,
        "channel": dispatch.channel,
        "recipient": dispatch.to,
        "category": dispatch.category,
        "content": dispatch.content,
        "data": dispatch.data,
    })
    .to_string();
    // Within the delivery's lease, whatever the endpoint allows its own messages.
    let mut spec = endpoint.spec.clone();
    spec.timeout_ms = Some(spec.timeout_ms().min(PROVIDER_TIMEOUT_MS));
    let answer = send::push(
        client,
        &spec,
        &endpoint.secrets,
        (&delivery.to_string(), None),
        body.as_bytes(),
        service.clock.now(),
    )
    .await;
    let said = answer.describe();
    Ok(match answer.status {
        _ if answer.succeeded() => Sent::Ok(
            format!("HTTP {}", answer.status.unwrap_or(200)),
            answer.latency_ms,
        ),
        Some(status) if (400..500).contains(&status) && status != 429 && status != 408 => {
            Sent::Failed(said, answer.latency_ms)
        }
        _ => Sent::Retry(said, answer.latency_ms, answer.retry_after_ms),
    })
}
