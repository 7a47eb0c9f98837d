//! Sending notifications against the real server and real receivers: the
//! in-app inbox and its event stream across a reconnect, dedup keys and
//! `Idempotency-Key`, Slack through a stand-in that answers 429 once, e-mail
//! through a real SMTP server with STARTTLS and a login, a webhook channel
//! signed with the delivery's id, and a failed channel falling back with a
//! failover event on `keel.alerts`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::time::Duration;

use common::receiver::{Receiver, reply};
use common::smtp::SmtpSink;
use common::{Server, assert_error, eventually};
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

async fn put(server: &Server, path: &str, body: Value) {
    let (status, answer) = server.call("PUT", &format!("{NS}{path}"), Some(body)).await;
    assert!(status == 200 || status == 201, "PUT {path}: {answer}");
}

async fn notify(server: &Server, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    server
        .send(
            "POST",
            &format!("{NS}/notifications"),
            &headers,
            body.to_string().into_bytes(),
        )
        .await
}

/// A server on `dir` with an in-app channel `inbox` and one recipient.
async fn with_inbox(dir: &tempfile::TempDir, recipient: &str, spec: Value) -> Server {
    let server = Server::start(dir, &[]).await;
    put(&server, "/channels/inbox", json!({"in_app": {}})).await;
    put(&server, &format!("/recipients/{recipient}"), spec).await;
    server
}

/// A channel `mail` to `sink` over plain SMTP, and the recipient `bob`.
async fn plain_mail_to_bob(server: &Server, sink: &SmtpSink) {
    let url = format!("smtp://127.0.0.1:{}?tls=none", sink.port);
    let mail = json!({"email": {"smtp_url": url, "from": "keel@example.com"}});
    put(server, "/channels/mail", mail).await;
    put(
        server,
        "/recipients/bob",
        json!({"email": "bob@example.com"}),
    )
    .await;
}

/// The notification once every delivery is final.
async fn settled(server: &Server, id: &str) -> Value {
    eventually("every delivery final", || async {
        let (_, n) = server.get(&format!("{NS}/notifications/{id}")).await;
        let done = n["deliveries"]
            .as_array()?
            .iter()
            .all(|d| !matches!(d["status"].as_str(), Some("queued" | "sending")));
        done.then_some(n)
    })
    .await
}

/// A Server-Sent Events reader: `(id, data)` of each `message` event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(server: &Server, recipient: &str, last: Option<u64>) -> Events {
        let mut request = reqwest::Client::new()
            .get(server.v1(&format!("{NS}/inbox/{recipient}/stream")))
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> (u64, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data, mut event) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse::<u64>().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    }
                }
                if event.as_deref() == Some("message") {
                    return (id.unwrap(), data.unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn in_app_messages_arrive_once_and_stream_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_inbox(&dir, "u1", json!({"email": "u1@example.com"})).await;
    let mut live = Events::open(&server, "u1", None).await;

    let first = json!({"subject": "Build 1 passed", "text": "all green", "channel": "inbox",
                       "to": "u1", "dedup_key": "build-1", "category": "ci"});
    let (status, sent) = notify(&server, first.clone(), Some("req-1")).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["deliveries"][0]["status"], "queued");
    let id = sent["id"].as_str().unwrap().to_owned();
    let (seq, message) = live.next().await;
    assert_eq!(seq, 1);
    assert_eq!(
        (message["title"].as_str(), message["body"].as_str()),
        (Some("Build 1 passed"), Some("all green"))
    );
    assert_eq!(message["notification"], id.as_str());

    // The same request again: the same notification, nothing new.
    let (status, again) = notify(&server, first.clone(), Some("req-1")).await;
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));
    // The same key with another body: refused.
    let mut other = first.clone();
    other["text"] = json!("changed");
    let refused = notify(&server, other, Some("req-1")).await;
    assert_error(&refused, 422, "idempotency_key_reused");
    // Another request with the same dedup key: answered with the first.
    let (status, dup) = notify(&server, first.clone(), None).await;
    assert_eq!(status, 200, "{dup}");
    assert_eq!(dup["id"], id.as_str());
    assert_eq!(dup["deliveries"][0]["status"], "suppressed_duplicate");

    for n in 2..=3 {
        let body = json!({"subject": format!("Build {n} passed"), "text": "", "channel": "inbox",
                          "to": "u1", "dedup_key": format!("build-{n}")});
        assert_eq!(notify(&server, body, None).await.0, 201);
        assert_eq!(live.next().await.0, n);
    }
    drop(live);
    // Reconnecting after the first: the second and third, once each, then new ones.
    let mut resumed = Events::open(&server, "u1", Some(1)).await;
    assert_eq!(resumed.next().await.0, 2);
    assert_eq!(resumed.next().await.0, 3);
    let body = json!({"subject": "Build 4", "text": "", "channel": "inbox", "to": "u1"});
    assert_eq!(notify(&server, body, None).await.0, 201);
    let (seq, message) = resumed.next().await;
    assert_eq!((seq, message["title"].as_str()), (4, Some("Build 4")));

    let (status, inbox) = server.get(&format!("{NS}/inbox/u1")).await;
    assert_eq!(status, 200);
    let ids: Vec<u64> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids, inbox["unread"].as_u64()), (vec![4, 3, 2, 1], Some(4)));
    let (_, page) = server.get(&format!("{NS}/inbox/u1?limit=2&after=3")).await;
    assert_eq!(page["messages"][0]["id"], 2);
    let (status, marked) = server
        .post(&format!("{NS}/inbox/u1/read"), json!({"ids": [1, 2]}))
        .await;
    assert_eq!((status, marked["changed"].as_u64()), (200, Some(2)));
    let (_, marked) = server
        .post(&format!("{NS}/inbox/u1/read"), json!({"ids": [1]}))
        .await;
    assert_eq!(marked["changed"], 0, "read already");
    assert_eq!(server.get(&format!("{NS}/inbox/u1")).await.1["unread"], 2);
    server
        .post(&format!("{NS}/inbox/u1/archive"), json!({"all": true}))
        .await;
    let (_, inbox) = server.get(&format!("{NS}/inbox/u1")).await;
    assert_eq!(
        (
            inbox["messages"].as_array().unwrap().len(),
            inbox["unread"].as_u64()
        ),
        (0, Some(0))
    );

    let n = settled(&server, &id).await;
    let delivery = &n["deliveries"][0];
    assert_eq!(delivery["status"], "sent");
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(n["request"]["content"]["subject"], "Build 1 passed");
    let (_, listed) = server
        .get(&format!(
            "{NS}/notifications?recipient=u1&status=sent&channel=inbox"
        ))
        .await;
    assert_eq!(listed["notifications"].as_array().unwrap().len(), 4);
    let (_, none) = server
        .get(&format!("{NS}/notifications?status=failed"))
        .await;
    assert_eq!(none["notifications"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_template_renders_for_its_recipient_and_preferences_hold_unless_critical() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_inbox(
        &dir,
        "ada",
        json!({"email": "ada@example.com", "data": {"name": "Ada"}}),
    )
    .await;
    put(
        &server,
        "/recipients/ada/preferences",
        json!({"categories": {"marketing": {"inbox": false}}}),
    )
    .await;
    put(
        &server,
        "/templates/welcome",
        json!({"in_app": {
        "title": "Hello {{ recipient.data.name }}", "body": "{{ data.count }} new"}}),
    )
    .await;

    let body =
        json!({"template": "welcome", "channel": "inbox", "to": "ada", "data": {"count": 3}});
    let (status, sent) = notify(&server, body, None).await;
    assert_eq!(status, 201, "{sent}");
    let mut live = Events::open(&server, "ada", Some(0)).await;
    let (_, message) = live.next().await;
    assert_eq!(
        (message["title"].as_str(), message["body"].as_str()),
        (Some("Hello Ada"), Some("3 new"))
    );

    let promo =
        json!({"template": "welcome", "channel": "inbox", "to": "ada", "category": "marketing"});
    let (status, off) = notify(&server, promo.clone(), None).await;
    assert_eq!(
        (status, off["deliveries"][0]["status"].as_str()),
        (201, Some("suppressed_preference"))
    );
    let mut critical = promo;
    critical["critical"] = json!(true);
    let (_, on) = notify(&server, critical, None).await;
    assert_eq!(on["deliveries"][0]["status"], "queued");

    let missing = notify(
        &server,
        json!({"template": "nope", "channel": "inbox", "to": "ada"}),
        None,
    )
    .await;
    assert_error(&missing, 404, "not_found");
    let nobody = notify(
        &server,
        json!({"subject": "s", "text": "t", "channel": "inbox", "to": "ghost"}),
        None,
    )
    .await;
    assert_error(&nobody, 404, "not_found");
    let both = notify(
        &server,
        json!({"template": "welcome", "subject": "s", "channel": "inbox", "to": "ada"}),
        None,
    )
    .await;
    assert_error(&both, 400, "invalid_request");
}

#[tokio::test]
async fn slack_gets_the_text_and_a_429_is_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut slack = Receiver::start().await;
    let mut limited = reply(429);
    limited.headers.push(("retry-after", "1".to_owned()));
    slack.then([limited, reply(200)]);
    put(
        &server,
        "/channels/ops",
        json!({"slack": {"webhook_url": slack.url}}),
    )
    .await;
    let body = json!({"subject": "Deploy", "text": "deploy 42 done", "channel": "ops",
                      "to": {"email": "oncall@example.com"}});
    let (status, sent) = notify(&server, body, None).await;
    assert_eq!(status, 201, "{sent}");
    let first = slack.next().await;
    assert_eq!(first.json()["text"], "deploy 42 done");
    let second = slack.next().await;
    assert!(
        second.at - first.at >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({:?})",
        second.at - first.at
    );
    let n = settled(&server, sent["id"].as_str().unwrap()).await;
    let outcomes: Vec<&str> = n["deliveries"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "sent"]);
    assert_eq!(n["deliveries"][0]["status"], "sent");
}

#[tokio::test]
async fn one_slack_channel_is_paced_at_one_message_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut slack = Receiver::start().await;
    put(
        &server,
        "/channels/ops",
        json!({"slack": {"webhook_url": slack.url}}),
    )
    .await;
    for n in 0..3 {
        let body = json!({"subject": "s", "text": format!("m{n}"), "channel": "ops",
                          "to": {"email": "oncall@example.com"}});
        assert_eq!(notify(&server, body, None).await.0, 201);
    }
    let mut at = Vec::new();
    for _ in 0..3 {
        at.push(slack.next().await.at);
    }
    let spread = at[2] - at[0];
    assert!(
        spread >= Duration::from_millis(1900),
        "three messages took {spread:?}"
    );
}

#[tokio::test]
async fn e_mail_goes_over_starttls_with_a_login_and_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path(), false).await;
    let cert = sink.cert.to_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &data,
        &["--allow-private-http"],
        &[("SSL_CERT_FILE", &cert)],
    )
    .await;
    let url = format!("smtp://keel:s3cret@localhost:{}", sink.port);
    put(
        &server,
        "/channels/mail",
        json!({"email": {"smtp_url": url, "from": "Keel <keel@example.com>",
                                                    "reply_to": "ops@example.com"}}),
    )
    .await;
    put(
        &server,
        "/templates/report",
        json!({"subject": "Report for {{ recipient.id }}",
        "text": "{{ data.n }} jobs", "html": "<p>{{ data.n }} <b>jobs</b> {{ data.tag }}</p>"}),
    )
    .await;
    put(
        &server,
        "/recipients/bob",
        json!({"email": "bob@example.com"}),
    )
    .await;
    let body = json!({"template": "report", "channel": "mail", "to": "bob",
                      "data": {"n": 7, "tag": "<x>"}});
    let (status, sent) = notify(&server, body, None).await;
    assert_eq!(status, 201, "{sent}");
    let mail = sink.message(1).await;
    let head = mail.lines().next().unwrap();
    assert!(head.contains("X-Sink: tls"), "STARTTLS was used: {head}");
    assert!(head.contains("login=keel"), "logged in: {head}");
    assert!(head.contains("rcpt=bob@example.com"), "{head}");
    assert!(mail.contains("Subject: Report for bob"), "{mail}");
    assert!(
        mail.contains("From: \"Keel\" <keel@example.com>")
            || mail.contains("From: Keel <keel@example.com>"),
        "{mail}"
    );
    assert!(mail.contains("Reply-To: ops@example.com"), "{mail}");
    assert!(mail.contains("7 jobs"), "{mail}");
    assert!(mail.contains("&lt;x&gt;"), "HTML is escaped: {mail}");
    let n = settled(&server, sent["id"].as_str().unwrap()).await;
    let delivery = &n["deliveries"][0];
    assert_eq!(delivery["status"], "sent", "{n}");
    let message_id = format!("Message-ID: <{}@keel>", delivery["id"].as_str().unwrap());
    assert!(mail.contains(&message_id), "{mail}");
    assert!(
        delivery["attempts"][0]["answer"]
            .as_str()
            .unwrap()
            .starts_with("250")
    );
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn a_server_without_starttls_is_refused_and_never_sent_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path(), true).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &["--allow-private-http"]).await;
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    put(
        &server,
        "/channels/mail",
        json!({"email": {"smtp_url": url, "from": "keel@example.com"},
                                         "fallback": ["inbox"]}),
    )
    .await;
    put(&server, "/channels/inbox", json!({"in_app": {}})).await;
    put(
        &server,
        "/recipients/bob",
        json!({"email": "bob@example.com"}),
    )
    .await;
    let body = json!({"subject": "s", "text": "t", "channel": "mail", "to": "bob"});
    let (_, sent) = notify(&server, body, None).await;
    let n = eventually("the first attempt is recorded", || async {
        let (_, n) = server
            .get(&format!(
                "{NS}/notifications/{}",
                sent["id"].as_str().unwrap()
            ))
            .await;
        (!n["deliveries"][0]["attempts"].as_array()?.is_empty()).then_some(n)
    })
    .await;
    let answer = n["deliveries"][0]["attempts"][0]["answer"]
        .as_str()
        .unwrap();
    assert!(answer.contains("STARTTLS"), "{answer}");
    assert_eq!(n["deliveries"][0]["attempts"][0]["outcome"], "retry");
    assert_eq!(sink.count(), 0, "nothing went in the clear");
}

#[tokio::test]
async fn a_webhook_channel_signs_with_the_delivery_id_and_a_failing_channel_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut hook = Receiver::start().await;
    let slack = Receiver::start().await;
    slack.then([reply(400)]);
    put(&server, "/endpoints/app", json!({"url": hook.url})).await;
    put(
        &server,
        "/channels/app",
        json!({"webhook": {"endpoint": "app"}}),
    )
    .await;
    put(
        &server,
        "/channels/ops",
        json!({"slack": {"webhook_url": slack.url}, "fallback": ["app"]}),
    )
    .await;
    let body = json!({"subject": "Disk full", "text": "node 3", "channel": "ops",
                      "to": {"email": "oncall@example.com"}, "data": {"node": 3}});
    let (status, sent) = notify(&server, body, None).await;
    assert_eq!(status, 201, "{sent}");
    let got = hook.next().await;
    let id = sent["id"].as_str().unwrap();
    let n = settled(&server, id).await;
    let deliveries = n["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{n}");
    assert_eq!(
        (
            deliveries[0]["channel"].as_str(),
            deliveries[0]["status"].as_str()
        ),
        (Some("ops"), Some("failed"))
    );
    assert_eq!(
        (
            deliveries[1]["channel"].as_str(),
            deliveries[1]["status"].as_str()
        ),
        (Some("app"), Some("sent"))
    );
    assert_eq!(deliveries[1]["fallback_of"], deliveries[0]["id"]);
    assert_eq!(
        got.id(),
        deliveries[1]["id"].as_str().unwrap(),
        "webhook-id is the delivery's id"
    );
    let payload = got.json();
    assert_eq!(
        (
            payload["notification"].as_str(),
            payload["data"]["node"].as_u64()
        ),
        (Some(id), Some(3))
    );
    let alerts = eventually("a failover event", || async {
        let (status, events) = server.get(&format!("{NS}/topics/keel.alerts/events")).await;
        (status == 200 && !events["events"].as_array()?.is_empty()).then_some(events)
    })
    .await;
    let event = &alerts["events"][0];
    assert_eq!(event["type"], "keel.notification.failover");
    let data: Value = if event["data"].is_string() {
        serde_json::from_str(event["data"].as_str().unwrap()).unwrap()
    } else {
        event["data"].clone()
    };
    assert_eq!(
        (data["from"].as_str(), data["to"].as_str()),
        (Some("ops"), Some("app"))
    );
}

#[tokio::test]
async fn a_kill_9_during_sends_leaves_one_message_per_dedup_key_on_webhook_and_in_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut hook = Receiver::start().await;
    // Slow answers keep deliveries in flight when the server dies.
    hook.then((0..30).map(|_| {
        let mut r = reply(200);
        r.delay = Duration::from_millis(100);
        r
    }));
    put(
        &server,
        "/endpoints/app",
        json!({"url": hook.url, "timeout_ms": 2000}),
    )
    .await;
    put(
        &server,
        "/channels/app",
        json!({"webhook": {"endpoint": "app"}}),
    )
    .await;
    put(&server, "/channels/inbox", json!({"in_app": {}})).await;
    put(
        &server,
        "/recipients/u1",
        json!({"email": "u1@example.com"}),
    )
    .await;
    let bodies: Vec<Value> = (0..30)
        .map(|i| {
            json!({"subject": format!("n{i}"), "text": "", "channels": ["app", "inbox"],
                   "to": "u1", "dedup_key": format!("k{i}"), "data": {"i": i}})
        })
        .collect();
    for body in &bodies {
        assert_eq!(notify(&server, body.clone(), None).await.0, 201);
    }
    let mut got: Vec<String> = hook.ids(5).await;
    server.kill9().await;
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    // The client sends everything again (it cannot know what landed): every
    // one was acknowledged, so every one is a duplicate now.
    for body in &bodies {
        let (status, answer) = notify(&server, body.clone(), None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["deliveries"][0]["status"], "suppressed_duplicate");
    }
    let (_, listed) = server.get(&format!("{NS}/notifications?limit=100")).await;
    let notifications = listed["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 30);
    let mut wanted = std::collections::HashSet::new();
    for n in notifications {
        let n = settled(&server, n["id"].as_str().unwrap()).await;
        for d in n["deliveries"].as_array().unwrap() {
            assert_eq!(d["status"], "sent", "{n}");
            if d["channel"] == "app" {
                wanted.insert(d["id"].as_str().unwrap().to_owned());
            }
        }
    }
    let repeats = hook.until_all(&wanted, &mut got).await;
    assert!(
        repeats <= 32,
        "only attempts in flight repeat, under their own webhook-id: {repeats}"
    );
    let (_, inbox) = server.get(&format!("{NS}/inbox/u1?limit=100")).await;
    let mut shown: Vec<&str> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["notification"].as_str().unwrap())
        .collect();
    shown.sort_unstable();
    shown.dedup();
    assert_eq!(
        (inbox["messages"].as_array().unwrap().len(), shown.len()),
        (30, 30),
        "one in-app message per notification"
    );
}

#[tokio::test]
async fn a_notify_step_sends_once_under_the_steps_own_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_inbox(&dir, "ada", json!({"email": "ada@example.com"})).await;
    let definition = json!({"name": "onboard", "steps": {
        "welcome": {"notify": {"subject": "Welcome ${{ input.name }}", "text": "glad you are here",
                                "channel": "inbox", "to": "${{ input.user }}"}},
        "bad": {"needs": ["welcome"],
                "notify": {"subject": "s", "text": "t", "channel": "nosuch", "to": "ada"}}}});
    put(&server, "/workflows/onboard", definition).await;
    let (status, run) = server
        .post(
            &format!("{NS}/workflows/onboard/runs"),
            json!({"input": {"name": "Ada", "user": "ada"}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let run = eventually("the run ends", || async {
        let (_, r) = server.get(&format!("{NS}/runs/{run_id}")).await;
        matches!(r["status"].as_str(), Some("succeeded" | "failed")).then_some(r)
    })
    .await;
    assert_eq!(
        run["status"], "failed",
        "the step naming no channel fails it: {run:#}"
    );
    let welcome = &run["steps"]["welcome"];
    assert_eq!(welcome["state"], "succeeded", "{run:#}");
    let id = welcome["output"]["id"]
        .as_str()
        .expect("the step's output names the notification");
    let n = settled(&server, id).await;
    assert_eq!(
        n["request"]["dedup_key"],
        format!("keel.run/{run_id}/welcome")
    );
    let mut live = Events::open(&server, "ada", Some(0)).await;
    assert_eq!(live.next().await.1["title"], "Welcome Ada");
    let bad = run["steps"]["bad"].to_string();
    assert!(bad.contains("nosuch"), "{bad}");
    let (_, inbox) = server.get(&format!("{NS}/inbox/ada")).await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1);
}

async fn status_as(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> u16 {
    server
        .call_as(Some(token), method, &format!("/v1{path}"), body)
        .await
        .0
}

#[tokio::test]
async fn a_recipients_token_reaches_its_inbox_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (server, admin) = Server::start_secured(&dir, &[]).await;
    let setup = [
        (
            "PUT",
            format!("{NS}/channels/inbox"),
            json!({"in_app": {}}),
            201,
        ),
        ("PUT", format!("{NS}/recipients/u1"), json!({}), 201),
        (
            "POST",
            format!("{NS}/notifications"),
            json!({"subject": "yours", "text": "", "channel": "inbox", "to": "u1"}),
            201,
        ),
    ];
    for (method, path, body, want) in setup {
        assert_eq!(
            status_as(&server, &admin, method, &path, Some(body)).await,
            want,
            "{path}"
        );
    }
    let minted = server
        .mint(&admin, json!({"name": "browser-u1", "role": "publisher", "namespaces": ["default"], "recipient": "u1"}))
        .await;
    assert_eq!(minted["resources"], json!(["inbox:u1"]));
    let token = minted["token"].as_str().unwrap();
    let inbox = eventually("the message is in the inbox", || async {
        let (status, inbox) = server
            .call_as(Some(token), "GET", &format!("/v1{NS}/inbox/u1"), None)
            .await;
        (status == 200 && inbox["messages"].as_array()?.len() == 1).then_some(inbox)
    })
    .await;
    assert_eq!(inbox["messages"][0]["title"], "yours");
    let read = status_as(
        &server,
        token,
        "POST",
        &format!("{NS}/inbox/u1/read"),
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(read, 200);
    for path in [
        format!("{NS}/inbox/u2"),
        format!("{NS}/notifications"),
        format!("{NS}/recipients/u1"),
        "/namespaces/other/inbox/u1".to_owned(),
    ] {
        assert_eq!(
            status_as(&server, token, "GET", &path, None).await,
            403,
            "{path}"
        );
    }
    for (role, recipient) in [("operator", "u1"), ("reader", "u*")] {
        let refused = server
            .call_as(Some(&admin), "POST", "/v1/tokens",
                     Some(json!({"name": "b", "role": role, "namespaces": ["default"], "recipient": recipient})))
            .await;
        assert_error(&refused, 400, "invalid_request");
    }
}

#[tokio::test]
async fn the_namespaces_dedup_window_bounds_how_long_a_key_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_inbox(&dir, "u1", json!({})).await;
    for bad in [
        json!({"dedup_window_ms": 10}),
        json!({"dedup_window_ms": 91u64 * 86_400_000}),
    ] {
        let refused = server
            .call("PUT", &format!("{NS}/preferences"), Some(bad))
            .await;
        assert_error(&refused, 400, "invalid_request");
    }
    let own = server
        .call(
            "PUT",
            &format!("{NS}/recipients/u1/preferences"),
            Some(json!({"dedup_window_ms": 5000})),
        )
        .await;
    assert_error(&own, 400, "invalid_request");
    put(&server, "/preferences", json!({"dedup_window_ms": 1000})).await;
    assert_eq!(
        server.get(&format!("{NS}/preferences")).await.1["dedup_window_ms"],
        1000
    );
    let body =
        json!({"subject": "s", "text": "t", "channel": "inbox", "to": "u1", "dedup_key": "w"});
    assert_eq!(notify(&server, body.clone(), None).await.0, 201);
    assert_eq!(notify(&server, body.clone(), None).await.0, 200, "held");
    // The window is the server's clock's: only time passing can end it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        notify(&server, body, None).await.0,
        201,
        "expired, the key is taken again"
    );
}

#[tokio::test]
async fn an_e_mail_carries_a_one_click_unsubscribe_that_turns_its_category_off() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path(), true).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        &data,
        &[
            "--allow-private-http",
            "--public-url",
            "https://keel.example.com/",
        ],
    )
    .await;
    plain_mail_to_bob(&server, &sink).await;
    let body = |category: &str, critical: bool| {
        json!({"subject": "Weekly report", "text": "numbers", "channel": "mail", "to": "bob",
               "category": category, "critical": critical})
    };
    assert_eq!(notify(&server, body("reports", false), None).await.0, 201);
    let mail = sink.message(1).await.replace("\r\n ", " ");
    let link = mail
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <"))
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or_else(|| panic!("a List-Unsubscribe header: {mail}"))
        .replace(' ', "");
    assert!(
        mail.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{mail}"
    );
    let token = link
        .strip_prefix("https://keel.example.com/v1/unsubscribe/")
        .unwrap_or_else(|| panic!("the link points at --public-url: {link}"));
    let one_click = |token: String| {
        let server = &server;
        async move {
            server
                .send(
                    "POST",
                    &format!("/unsubscribe/{token}"),
                    &[("content-type", "application/x-www-form-urlencoded")],
                    b"List-Unsubscribe=One-Click".to_vec(),
                )
                .await
        }
    };
    let mut forged = token.to_owned();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_error(&one_click(forged).await, 404, "not_found");
    let (status, done) = one_click(token.to_owned()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done,
        json!({"recipient": "bob", "category": "reports", "channel": "mail"})
    );
    let (_, prefs) = server
        .get(&format!("{NS}/recipients/bob/preferences"))
        .await;
    assert_eq!(prefs["categories"]["reports"]["mail"], false);
    let (_, off) = notify(&server, body("reports", false), None).await;
    assert_eq!(off["deliveries"][0]["status"], "suppressed_preference");
    let (_, page) = server.get(&format!("/unsubscribe/{token}")).await;
    assert!(
        page.as_str().unwrap().contains("<form method=\"post\">"),
        "{page}"
    );
    // A critical message goes anyway, and offers no unsubscribe.
    assert_eq!(notify(&server, body("reports", true), None).await.0, 201);
    let critical = sink.message(2).await;
    assert!(!critical.contains("List-Unsubscribe"), "{critical}");
}

#[tokio::test]
async fn a_digest_collects_its_window_into_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_inbox(&dir, "u1", json!({})).await;
    put(&server, "/templates/builds", json!({"in_app": {
        "title": "{{ digest.count }} builds", "body": "{% for i in digest.items %}#{{ i.data.n }} {% endfor %}"}})).await;
    let mut live = Events::open(&server, "u1", Some(0)).await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let body = json!({"template": "builds", "channel": "inbox", "to": "u1", "data": {"n": n},
                          "digest": {"key": "builds", "window_ms": 1000}});
        let (status, sent) = notify(&server, body, None).await;
        assert_eq!(status, 201, "{sent}");
        let want = if n == 1 { "queued" } else { "digested" };
        assert_eq!(sent["deliveries"][0]["status"], want);
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    let (_, message) = live.next().await;
    assert_eq!(
        (message["title"].as_str(), message["body"].as_str()),
        (Some("3 builds"), Some("#1 #2 #3 "))
    );
    assert_eq!(message["notification"], ids[0].as_str());
    let later = settled(&server, &ids[2]).await;
    assert_eq!(later["deliveries"][0]["duplicate_of"], ids[0].as_str());
    // Without a template, the parts are listed; a digest and a dedup key do not mix.
    for (n, subject) in [(1, "Deploy a"), (2, "Deploy b")] {
        let body = json!({"subject": subject, "text": format!("step {n}"), "channel": "inbox", "to": "u1",
                          "digest": {"key": "deploys", "window_ms": 1000}});
        assert_eq!(notify(&server, body, None).await.0, 201);
    }
    let (_, message) = live.next().await;
    assert_eq!(message["title"], "Deploy a (and 1 more)");
    assert_eq!(message["body"], "Deploy a\nstep 1\n\nDeploy b\nstep 2");
    let both = json!({"subject": "s", "text": "t", "channel": "inbox", "to": "u1", "dedup_key": "k",
                      "digest": {"key": "d", "window_ms": 1000}});
    assert_error(&notify(&server, both, None).await, 400, "invalid_request");
}

#[tokio::test]
async fn an_e_mail_cut_by_a_kill_9_before_the_servers_answer_is_unknown_never_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start_with(dir.path(), &["--plain", "--slow"]).await;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(&data, &["--allow-private-http"]).await;
    plain_mail_to_bob(&server, &sink).await;
    let body = json!({"subject": "Invoice", "text": "due", "channel": "mail", "to": "bob"});
    let (_, sent) = notify(&server, body, None).await;
    // The message is handed over; the server's 250 has not come.
    sink.message(1).await;
    server.kill9().await;
    let server = Server::start(&data, &["--allow-private-http"]).await;
    let id = sent["id"].as_str().unwrap();
    // Its lease (20 s for e-mail) ends, and the next attempt finds it sending.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let n = loop {
        let (_, n) = server.get(&format!("{NS}/notifications/{id}")).await;
        if n["deliveries"][0]["status"] != "sending" {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "still sending: {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivery = &n["deliveries"][0];
    assert_eq!(delivery["status"], "unknown", "{n}");
    let answer = delivery["attempts"][0]["answer"].as_str().unwrap();
    assert!(answer.contains("cut"), "{answer}");
    assert_eq!(sink.count(), 1, "not sent again");
}

#[tokio::test]
async fn a_slack_bot_posts_with_its_token_and_slacks_own_error_fails_the_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut slack = Receiver::start().await;
    let answer = |body: &str| {
        let mut r = reply(200);
        r.body = body.to_owned();
        r
    };
    slack.then([
        answer(r#"{"ok":true,"ts":"1.2"}"#),
        answer(r#"{"ok":false,"error":"channel_not_found"}"#),
    ]);
    let api = slack.url.trim_end_matches("/hook").to_owned();
    put(
        &server,
        "/channels/bot",
        json!({"slack": {"bot_token": "xoxb-secret", "channel": "C123", "api_url": api}}),
    )
    .await;
    put(&server, "/templates/blocks", json!({"text": "fallback text",
        "slack_blocks": r#"[{"type":"section","text":{"type":"mrkdwn","text":"*{{ data.title }}*"}}]"#})).await;
    let to = json!({"email": "oncall@example.com"});
    let (_, first) = notify(
        &server,
        json!({"template": "blocks", "channel": "bot", "to": to, "data": {"title": "Hi"}}),
        None,
    )
    .await;
    let got = slack.next().await;
    assert_eq!(got.headers["authorization"], "Bearer xoxb-secret");
    let body = got.json();
    assert_eq!(
        (body["channel"].as_str(), body["text"].as_str()),
        (Some("C123"), Some("fallback text"))
    );
    assert_eq!(body["blocks"][0]["text"]["text"], "*Hi*");
    assert_eq!(
        settled(&server, first["id"].as_str().unwrap()).await["deliveries"][0]["status"],
        "sent"
    );
    let (_, second) = notify(
        &server,
        json!({"subject": "s", "text": "t", "channel": "bot", "to": to}),
        None,
    )
    .await;
    let n = settled(&server, second["id"].as_str().unwrap()).await;
    assert_eq!(n["deliveries"][0]["status"], "failed");
    assert!(
        n["deliveries"][0]["attempts"][0]["answer"]
            .as_str()
            .unwrap()
            .contains("channel_not_found")
    );
    let (_, shown) = server.get(&format!("{NS}/channels/bot")).await;
    assert!(!shown.to_string().contains("xoxb-secret"), "{shown}");
}
