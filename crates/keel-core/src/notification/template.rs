//! A notification's templates: minijinja over `data`, `recipient` and
//! `notification`, checked whole when the template is saved (a template that
//! does not parse is refused with its field and line), rendered with a fuel
//! budget when a message goes out. HTML is escaped; text and Slack are not.

use minijinja::{AutoEscape, Environment};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Instructions one render may take: a loop over a huge list stops here.
const FUEL: u64 = 200_000;
const MAX_SOURCE: usize = 64 * 1024;

/// What an in-app message shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InAppTemplate {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A template as saved (`PUT .../templates/{name}`): every part optional,
/// and each channel uses the parts it needs (e-mail `subject` with `text`
/// and/or `html`; Slack `slack_blocks`, else `text`; in-app `in_app`, else
/// `subject` and `text`; a webhook gets them all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A template whose output is Slack Block Kit's `blocks` as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_blocks: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<InAppTemplate>,
}

/// A template's output for one notification.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rendered {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub slack_blocks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<InAppTemplate>,
}

/// An environment for one check or render: templates are compiled from the
/// stored text each time (a few microseconds), so nothing is cached.
fn env<'source>() -> Environment<'source> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // Template names are the part they render: only `html` escapes.
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

/// Where a template went wrong, in words a user can act on.
fn describe(part: &str, e: &minijinja::Error) -> Error {
    let line = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    Error::invalid(format!("template {part}{line}: {}{detail}", e.kind()))
}

impl TemplateSpec {
    /// The parts, by the name errors and escaping use.
    fn parts(&self) -> Vec<(&'static str, &str)> {
        let mut parts: Vec<(&'static str, &str)> = [
            ("subject", &self.subject),
            ("text", &self.text),
            ("html", &self.html),
            ("slack_blocks", &self.slack_blocks),
        ]
        .into_iter()
        .filter_map(|(name, source)| source.as_deref().map(|s| (name, s)))
        .collect();
        if let Some(in_app) = &self.in_app {
            parts.push(("in_app.title", in_app.title.as_str()));
            parts.push(("in_app.body", in_app.body.as_str()));
            if let Some(url) = &in_app.url {
                parts.push(("in_app.url", url.as_str()));
            }
        }
        parts
    }

    /// Every part parses; at least one is given.
    pub fn check(&self) -> Result<(), Error> {
        let parts = self.parts();
        if parts.is_empty() {
            return Err(Error::invalid(
                "a template needs at least one of subject, text, html, slack_blocks and in_app",
            ));
        }
        let env = env();
        for (part, source) in parts {
            if source.len() > MAX_SOURCE {
                return Err(Error::invalid(format!(
                    "template {part} is over {MAX_SOURCE} bytes"
                )));
            }
            env.template_from_named_str(part, source)
                .map_err(|e| describe(part, &e))?;
        }
        Ok(())
    }

    /// Renders every part over `context` (`{"data","recipient","notification"}`).
    pub fn render(&self, context: &Value) -> Result<Rendered, Error> {
        let env = env();
        let one = |part: &str, source: &str| -> Result<String, Error> {
            env.render_named_str(
                part,
                source,
                minijinja::Value::from(minijinja::value::Serde(context)),
            )
            .map_err(|e| describe(part, &e))
        };
        let maybe = |part: &str, source: &Option<String>| {
            source.as_deref().map(|s| one(part, s)).transpose()
        };
        let slack_blocks = match &self.slack_blocks {
            Some(source) => {
                let text = one("slack_blocks", source)?;
                Some(serde_json::from_str(&text).map_err(|e| {
                    Error::invalid(format!("template slack_blocks did not render JSON: {e}"))
                })?)
            }
            None => None,
        };
        let in_app = match &self.in_app {
            Some(t) => Some(InAppTemplate {
                title: one("in_app.title", &t.title)?,
                body: one("in_app.body", &t.body)?,
                url: t.url.as_deref().map(|u| one("in_app.url", u)).transpose()?,
            }),
            None => None,
        };
        Ok(Rendered {
            subject: maybe("subject", &self.subject)?,
            text: maybe("text", &self.text)?,
            html: maybe("html", &self.html)?,
            slack_blocks,
            in_app,
        })
    }
}
