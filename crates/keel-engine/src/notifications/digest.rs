//! Digests: notifications with a `digest` key fold, per channel and
//! recipient, into the first one's delivery, which waits for the window
//! the first opened to end (the store's hold on the key, like a dedup key,
//! decides which is first in the same write that accepts each). When it
//! goes, it is rendered again with everything it collected: a template
//! sees `digest.items` (each one's id, data and content as accepted) and
//! `digest.count`; without a template, the subjects and texts are listed.

use keel_core::notification::{Dispatch, Rendered, TemplateSpec};
use keel_core::{Error, Namespace};
use serde_json::Value;

use super::NotificationService;
use super::accept::digest_context;

/// The most notifications one digest carries.
const MAX_ITEMS: u32 = 500;

impl NotificationService {
    /// A digest's content, rendered with what it collected on its channel.
    pub(crate) async fn digest_content(
        &self,
        namespace: &Namespace,
        dispatch: &Dispatch,
    ) -> Result<Rendered, Error> {
        let Some(plan) = &dispatch.digest else {
            return Ok(dispatch.content.clone());
        };
        let folded = self
            .store
            .notifications_digested(
                namespace,
                &dispatch.notification,
                dispatch.channel.as_str(),
                MAX_ITEMS - 1,
            )
            .await?;
        let first = serde_json::to_value(&dispatch.content).unwrap_or(Value::Null);
        let mut items = vec![(dispatch.notification, &dispatch.data, Some(&first))];
        for n in &folded {
            items.push((n.id, &n.body["data"], Some(&n.body["content"])));
        }
        match &plan.template {
            Some(name) => {
                let spec: TemplateSpec = self.template_get(namespace, name).await?.spec;
                let mut context = plan.context.clone();
                context["digest"] = digest_context(&plan.key, &items);
                spec.render(&context)
            }
            None => Ok(listed(&dispatch.content, &folded)),
        }
    }
}

/// Inline parts: the first subject with how many more, and every one's
/// subject and text, in order.
fn listed(first: &Rendered, folded: &[keel_store::Notification]) -> Rendered {
    let mut parts = vec![(first.subject.clone(), first.text.clone())];
    for n in folded {
        let content = &n.body["content"];
        let text = |k: &str| content[k].as_str().map(str::to_owned);
        parts.push((text("subject"), text("text")));
    }
    let subject = match (first.subject.clone(), folded.len()) {
        (subject, 0) => subject,
        (subject, more) => Some(format!("{} (and {more} more)", subject.unwrap_or_default())),
    };
    let text = parts
        .into_iter()
        .map(|(s, t)| [s, t].into_iter().flatten().collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n");
    Rendered {
        subject,
        text: Some(text),
        ..Rendered::default()
    }
}
