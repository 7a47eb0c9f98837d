//! The notification domain's pure rules, checked: SMTP URLs, mailboxes, channel kinds
//! and their secrets, templates, preferences, delivery states, recipients.

use serde_json::json;

use super::*;
use crate::ChannelName;

fn channel(spec: serde_json::Value) -> Result<ChannelSpec, Error> {
    let spec: ChannelSpec =
        serde_json::from_value(spec).map_err(|e| Error::invalid(e.to_string()))?;
    spec.check(&ChannelName::new("c")?)?;
    Ok(spec)
}

#[test]
fn smtp_urls_say_how_tls_is_spoken() {
    let s = SmtpServer::parse("smtp://me%40x.example:p%3Ass@mail.example").unwrap();
    assert_eq!(
        (s.host.as_str(), s.port, s.tls),
        ("mail.example", 587, SmtpTls::Required)
    );
    assert_eq!(
        (s.user.as_deref(), s.password.as_deref()),
        (Some("me@x.example"), Some("p:ss"))
    );
    let s = SmtpServer::parse("smtps://mail.example").unwrap();
    assert_eq!((s.port, s.tls, s.user), (465, SmtpTls::Implicit, None));
    let s = SmtpServer::parse("smtp://127.0.0.1:2525?tls=none").unwrap();
    assert_eq!((s.port, s.tls), (2525, SmtpTls::None));
    let s = SmtpServer::parse("smtp://h?tls=opportunistic").unwrap();
    assert_eq!(s.tls, SmtpTls::Opportunistic);
    for bad in [
        "http://mail.example",
        "smtp://",
        "smtps://h?tls=none",
        "smtp://h?tls=maybe",
        "smtp://h?x=1",
        "not a url",
    ] {
        assert!(SmtpServer::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn mailboxes_are_one_address_with_or_without_a_name() {
    for good in ["a@b.example", "Ops <ops@b.example>", "\"O, Ps\" <o@b>"] {
        assert!(check_mailbox("from", good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "nobody",
        "a@",
        "@b",
        "Ops <ops@b.example",
        "a@b@c",
        "a b@c",
        "x@y\r\nBcc: z@w",
    ] {
        assert!(check_mailbox("from", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_channel_is_exactly_one_kind_and_checked_for_it() {
    let email = channel(
        json!({"email": {"smtp_url": "smtp://u:secret@h:587", "from": "Keel <k@h.example>"}}),
    )
    .unwrap();
    assert_eq!(email.kind(), ChannelKind::Email);
    assert_eq!(
        channel(json!({"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/x"}}))
            .unwrap()
            .kind(),
        ChannelKind::Slack
    );
    assert_eq!(
        channel(json!({"slack": {"bot_token": "xoxb-1", "channel": "#ops"}}))
            .unwrap()
            .kind(),
        ChannelKind::Slack
    );
    assert_eq!(
        channel(json!({"webhook": {"endpoint": "hooks"}}))
            .unwrap()
            .kind(),
        ChannelKind::Webhook
    );
    assert_eq!(
        channel(json!({"in_app": {}})).unwrap().kind(),
        ChannelKind::InApp
    );
    for kind in [
        ChannelKind::Email,
        ChannelKind::Slack,
        ChannelKind::Webhook,
        ChannelKind::InApp,
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    for bad in [
        json!({}),
        json!({"in_app": {}, "webhook": {"endpoint": "e"}}),
        json!({"slack": {}}),
        json!({"slack": {"webhook_url": "https://h/x", "bot_token": "t", "channel": "c"}}),
        json!({"slack": {"bot_token": "t"}}),
        json!({"slack": {"webhook_url": "ftp://h/x"}}),
        json!({"email": {"smtp_url": "smtp://h", "from": "nobody"}}),
        json!({"email": {"smtp_url": "smtp://h", "from": "a@b", "reply_to": "x"}}),
        json!({"in_app": {}, "fallback": ["c"]}),
        json!({"in_app": {}, "rate_limit": {"per_second": 0}}),
        json!({"in_app": {}, "colour": "red"}),
    ] {
        assert!(channel(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn secrets_never_show_again() {
    let email = channel(json!({"email": {"smtp_url": "smtp://u:secret@h:587", "from": "k@h"}}))
        .unwrap()
        .redacted();
    let shown = serde_json::to_string(&email).unwrap();
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("smtp://u:"), "the rest stays: {shown}");
    let hook =
        channel(json!({"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/tok"}}))
            .unwrap()
            .redacted();
    let shown = serde_json::to_string(&hook).unwrap();
    assert!(
        !shown.contains("tok") && shown.contains("https://hooks.slack.com/"),
        "{shown}"
    );
    let bot = channel(json!({"slack": {"bot_token": "xoxb-secret", "channel": "#ops"}}))
        .unwrap()
        .redacted();
    let shown = serde_json::to_string(&bot).unwrap();
    assert!(!shown.contains("xoxb") && shown.contains("#ops"), "{shown}");
}

#[test]
fn templates_are_checked_whole_and_rendered_over_data_and_recipient() {
    let t = TemplateSpec {
        subject: Some("Build {{ data.build }} {{ data.status }}".into()),
        text: Some("Hi {{ recipient.data.name }}, {{ data.status }}.".into()),
        html: Some("<b>{{ data.status }}</b>".into()),
        slack_blocks: Some(
            r#"[{"type":"section","text":{"type":"mrkdwn","text":"{{ data.status }}"}}]"#.into(),
        ),
        in_app: Some(InAppTemplate {
            title: "{{ data.build }}".into(),
            body: String::new(),
            url: Some("https://ci.example/{{ data.build }}".into()),
        }),
    };
    t.check().unwrap();
    let out = t
        .render(&json!({"data": {"build": 42, "status": "<failed>"}, "recipient": {"data": {"name": "Ada"}}}))
        .unwrap();
    assert_eq!(out.subject.as_deref(), Some("Build 42 <failed>"));
    assert_eq!(out.text.as_deref(), Some("Hi Ada, <failed>."));
    assert_eq!(
        out.html.as_deref(),
        Some("<b>&lt;failed&gt;</b>"),
        "HTML escapes"
    );
    assert_eq!(out.slack_blocks.unwrap()[0]["text"]["text"], "<failed>");
    let in_app = out.in_app.unwrap();
    assert_eq!(
        (in_app.title.as_str(), in_app.url.as_deref()),
        ("42", Some("https://ci.example/42"))
    );

    assert!(TemplateSpec::default().check().is_err(), "empty");
    let broken = TemplateSpec {
        text: Some("line one\n{% if x %}never closed".into()),
        ..TemplateSpec::default()
    };
    let e = broken.check().unwrap_err();
    assert!(
        e.message.contains("template text (line 2)"),
        "{}",
        e.message
    );
    let endless = TemplateSpec {
        text: Some(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                .into(),
        ),
        ..TemplateSpec::default()
    };
    assert!(endless.render(&json!({})).is_err(), "fuel runs out");
}

#[test]
fn the_most_specific_preference_wins_and_critical_ignores_them() {
    let prefs = |v: serde_json::Value| -> Preferences { serde_json::from_value(v).unwrap() };
    let namespace =
        prefs(json!({"channels": {"sms": false}, "categories": {"marketing": {"email": false}}}));
    let ada = prefs(
        json!({"channels": {"email": false}, "categories": {"marketing": {"sms": true}, "billing": {"email": true}}}),
    );
    let none = Preferences::default();
    assert!(
        allowed(&none, &none, None, "email", false),
        "nothing said: allowed"
    );
    assert!(!allowed(
        &namespace,
        &none,
        Some("marketing"),
        "email",
        false
    ));
    assert!(allowed(&namespace, &none, Some("billing"), "email", false));
    assert!(
        !allowed(&namespace, &ada, Some("news"), "email", false),
        "her channel off"
    );
    assert!(
        allowed(&namespace, &ada, Some("billing"), "email", false),
        "her category on"
    );
    assert!(
        allowed(&namespace, &ada, Some("marketing"), "sms", false),
        "hers over the namespace's"
    );
    assert!(!allowed(&namespace, &none, None, "sms", false));
    assert!(
        allowed(&namespace, &ada, Some("news"), "email", true),
        "critical"
    );
    assert!(prefs(json!({"channels": {"": true}})).check().is_err());
}

#[test]
fn delivery_statuses_read_as_the_contract_writes_them() {
    for status in [
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Unknown,
        DeliveryStatus::SuppressedDuplicate,
        DeliveryStatus::SuppressedPreference,
        DeliveryStatus::Digested,
    ] {
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
    assert!(!DeliveryStatus::Sending.is_final() && DeliveryStatus::Unknown.is_final());
}

#[test]
fn recipients_are_checked() {
    let ok = RecipientSpec {
        email: Some("ada@example.com".into()),
        timezone: Some("Europe/London".into()),
        data: Some(json!({"name": "Ada"})),
        ..RecipientSpec::default()
    };
    ok.check().unwrap();
    for bad in [
        RecipientSpec {
            email: Some("x".into()),
            ..RecipientSpec::default()
        },
        RecipientSpec {
            timezone: Some("Mars/Olympus".into()),
            ..RecipientSpec::default()
        },
        RecipientSpec {
            data: Some(json!([1])),
            ..RecipientSpec::default()
        },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
}
