//! Notification settings against the real server: channels keep their
//! secrets to themselves, templates that do not parse are refused with the
//! part and line, recipients and preferences, the namespace's and each
//! recipient's.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::Server;
use keel_client::{Client, PreferencesBody};
use serde_json::json;

#[tokio::test]
async fn a_channel_keeps_its_secrets_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let path = "/v1/namespaces/default/channels/mail";
    let spec = json!({"email": {"smtp_url": "smtp://ops:hunter2@mail.example:587", "from": "Keel <keel@example.com>"},
                      "fallback": ["inbox"], "rate_limit": {"per_second": 5}});
    let (status, body) = server.call("PUT", path, Some(spec.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["kind"], "email");
    let (status, again) = server.call("PUT", path, Some(spec)).await;
    assert_eq!(status, 200, "{again}");
    let (status, got) = server.call("GET", path, None).await;
    assert_eq!(status, 200);
    let shown = got.to_string();
    assert!(
        !shown.contains("hunter2"),
        "the password never shows: {shown}"
    );
    assert!(
        shown.contains("ops") && shown.contains("mail.example"),
        "the rest does: {shown}"
    );
    assert_eq!(got["fallback"], json!(["inbox"]));

    let (status, _) = server
        .call(
            "PUT",
            "/v1/namespaces/default/channels/inbox",
            Some(json!({"in_app": {}})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, list) = server
        .call("GET", "/v1/namespaces/default/channels", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inbox", "mail"]);
    assert!(!list.to_string().contains("hunter2"));
    let (status, page) = server
        .call(
            "GET",
            "/v1/namespaces/default/channels?after=inbox&limit=1",
            None,
        )
        .await;
    assert_eq!(
        (status, page["channels"][0]["name"].as_str()),
        (200, Some("mail"))
    );

    for (bad, why) in [
        (
            json!({"in_app": {}, "slack": {"webhook_url": "https://h/x"}}),
            "exactly one",
        ),
        (
            json!({"email": {"smtp_url": "http://h", "from": "a@b"}}),
            "smtp_url",
        ),
        (
            json!({"email": {"smtp_url": "smtp://h", "from": "nobody"}}),
            "email.from",
        ),
        (json!({"slack": {"bot_token": "xoxb"}}), "slack takes"),
        (json!({"in_app": {}, "fallback": ["mail"]}), "own fallback"),
    ] {
        let (status, body) = server.call("PUT", path, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    let (status, _) = server.call("DELETE", path, None).await;
    assert_eq!(status, 204);
    let (status, body) = server.call("GET", path, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn templates_are_refused_with_the_part_and_line_that_do_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let path = "/v1/namespaces/default/templates/build";
    let (status, body) = server
        .call(
            "PUT",
            path,
            Some(json!({"subject": "ok", "html": "<p>\n{% if x %}never closed</p>"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("template html (line 2)"), "{message}");
    let (status, body) = server.call("PUT", path, Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");

    let template = json!({
        "subject": "Build {{ data.build }} {{ data.status }}",
        "text": "Hi {{ recipient.data.name }}",
        "in_app": {"title": "Build {{ data.build }}", "url": "https://ci.example/{{ data.build }}"},
    });
    let (status, body) = server.call("PUT", path, Some(template.clone())).await;
    assert_eq!(status, 201, "{body}");
    let (status, got) = server.call("GET", path, None).await;
    assert_eq!((status, &got["subject"]), (200, &template["subject"]));
    assert_eq!(got["in_app"]["body"], "", "a part left out reads empty");
}

#[tokio::test]
async fn recipients_and_preferences_the_namespaces_and_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let ada = "/v1/namespaces/default/recipients/user-42";
    let (status, body) = server
        .call("PUT", ada, Some(json!({"email": "ada@example.com", "timezone": "Europe/London", "data": {"name": "Ada"}})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "user-42");
    let (status, body) = server
        .call("PUT", ada, Some(json!({"timezone": "Mars/Olympus"})))
        .await;
    assert_eq!(status, 400, "{body}");

    let prefs = json!({"channels": {"mail": false}, "categories": {"billing": {"mail": true}}});
    let (status, body) = server
        .call("PUT", &format!("{ada}/preferences"), Some(prefs.clone()))
        .await;
    assert_eq!((status, &body), (200, &prefs));
    let (status, body) = server
        .call("GET", &format!("{ada}/preferences"), None)
        .await;
    assert_eq!((status, &body), (200, &prefs));
    let (status, body) = server
        .call(
            "PUT",
            "/v1/namespaces/default/recipients/nobody/preferences",
            Some(prefs.clone()),
        )
        .await;
    assert_eq!(status, 404, "a stranger's preferences: {body}");

    let (status, body) = server
        .call("GET", "/v1/namespaces/default/preferences", None)
        .await;
    assert_eq!((status, body), (200, json!({})), "nothing said yet");
    let defaults = json!({"categories": {"marketing": {"mail": false}}});
    let (status, _) = server
        .call(
            "PUT",
            "/v1/namespaces/default/preferences",
            Some(defaults.clone()),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = server
        .call("GET", "/v1/namespaces/default/preferences", None)
        .await;
    assert_eq!(body, defaults);

    let (status, list) = server
        .call("GET", "/v1/namespaces/default/recipients", None)
        .await;
    assert_eq!(
        (status, list["recipients"][0]["email"].as_str()),
        (200, Some("ada@example.com"))
    );
    let (status, _) = server.call("DELETE", ada, None).await;
    assert_eq!(status, 204);
    // Her preferences went with her: a new Ada starts from the defaults.
    server.call("PUT", ada, Some(json!({}))).await;
    let (status, body) = server
        .call("GET", &format!("{ada}/preferences"), None)
        .await;
    assert_eq!((status, body), (200, json!({})));
}

#[tokio::test]
async fn the_rust_client_puts_reads_and_deletes_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let slack =
        serde_json::from_value(json!({"slack": {"bot_token": "xoxb-secret", "channel": "#ops"}}))
            .unwrap();
    let put = client.put_channel("default", "ops", &slack).await.unwrap();
    assert_eq!(put.kind, "slack");
    let got = client.get_channel("default", "ops").await.unwrap();
    assert_eq!(
        got.spec.slack.unwrap().bot_token.as_deref(),
        Some("(hidden)")
    );
    assert_eq!(
        client
            .list_channels("default")
            .await
            .unwrap()
            .channels
            .len(),
        1
    );

    let template = serde_json::from_value(json!({"text": "{{ data.n }} failed"})).unwrap();
    client
        .put_template("default", "t", &template)
        .await
        .unwrap();
    assert_eq!(
        client
            .get_template("default", "t")
            .await
            .unwrap()
            .spec
            .text
            .as_deref(),
        Some("{{ data.n }} failed")
    );
    let broken = serde_json::from_value(json!({"text": "{{ oops"})).unwrap();
    let refused = client
        .put_template("default", "t", &broken)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("invalid_request"), "{refused}");
    assert_eq!(
        client
            .list_templates("default")
            .await
            .unwrap()
            .templates
            .len(),
        1
    );

    let ada = serde_json::from_value(json!({"email": "ada@example.com"})).unwrap();
    client.put_recipient("default", "ada", &ada).await.unwrap();
    let prefs: PreferencesBody =
        serde_json::from_value(json!({"channels": {"ops": false}})).unwrap();
    assert_eq!(
        client
            .put_preferences("default", Some("ada"), &prefs)
            .await
            .unwrap(),
        prefs
    );
    assert_eq!(
        client
            .get_preferences("default", Some("ada"))
            .await
            .unwrap(),
        prefs
    );
    assert_eq!(
        client.get_preferences("default", None).await.unwrap(),
        PreferencesBody::default()
    );
    assert_eq!(
        client
            .list_recipients("default")
            .await
            .unwrap()
            .recipients
            .len(),
        1
    );

    client.delete_recipient("default", "ada").await.unwrap();
    client.delete_template("default", "t").await.unwrap();
    client.delete_channel("default", "ops").await.unwrap();
    let gone = client.get_channel("default", "ops").await.unwrap_err();
    assert_eq!(gone.code(), Some("not_found"), "{gone}");
    let gone = client.delete_recipient("default", "ada").await.unwrap_err();
    assert_eq!(gone.code(), Some("not_found"), "{gone}");
}

#[tokio::test]
async fn the_rust_client_sends_once_per_key_and_reads_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let client = Client::new(&server.url).unwrap();
    let inbox: keel_client::ChannelRequest = serde_json::from_value(json!({"in_app": {}})).unwrap();
    client
        .put_channel("default", "inbox", &inbox)
        .await
        .unwrap();
    let u9 = keel_client::RecipientRequest::default();
    client.put_recipient("default", "u9", &u9).await.unwrap();
    let request: keel_client::NotifyRequest = serde_json::from_value(json!({
        "subject": "Hello", "text": "from the client", "channel": "inbox", "to": "u9"}))
    .unwrap();
    let sent = client
        .notify("default", &request, Some("once"))
        .await
        .unwrap();
    let again = client
        .notify("default", &request, Some("once"))
        .await
        .unwrap();
    assert_eq!(sent.id, again.id, "one notification per Idempotency-Key");
    let page = loop {
        let page = client.inbox("default", "u9", None).await.unwrap();
        if !page.messages.is_empty() {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!((page.messages.len(), page.unread), (1, 1));
    assert_eq!(page.messages[0].title, "Hello");
    let all = keel_client::InboxMarkRequest {
        ids: None,
        all: true,
    };
    let marked = client
        .inbox_mark("default", "u9", "read", &all)
        .await
        .unwrap();
    assert_eq!(marked.changed, 1);
    let n = client.get_notification("default", &sent.id).await.unwrap();
    assert_eq!(n.deliveries[0].status, keel_client::DeliveryStatus::Sent);
    let refused = client
        .notify("default", &request, Some(""))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Idempotency-Key"), "{refused}");
}
