//! Webhook sources end to end: every provider's scheme verified with
//! signatures computed here from the provider's documented algorithm, and
//! refused when the body is tampered with, the secret is wrong or the
//! timestamp is stale (storing nothing); provider retries deduplicated;
//! Slack's challenge answered; secrets never shown, nor logged (nor
//! signatures, nor bodies) with every log level on.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use base64::Engine as _;
use common::{Server, assert_error};
use ring::hmac;
use serde_json::{Value, json};

const SECRET: &str = "s3cr3t-for-tests";
/// `whsec_` + base64 of the key, as Standard Webhooks writes secrets.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn mac(key: &[u8], signed: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), signed)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Seconds since the epoch by the clock the server reads too.
fn now_s() -> u64 {
    use keel_core::Clock as _;
    (keel_core::SystemClock.now().as_millis() / 1000) as u64
}

/// A provider's request: headers and body, signed with `secret` at `ts`.
struct Signed {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Signs `body` as `scheme` does, per the provider's documentation.
fn sign(scheme: &str, secret: &str, ts: u64, body: &[u8]) -> Signed {
    let with = |headers: Vec<(&str, String)>| Signed {
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body: body.to_vec(),
    };
    let concat = |parts: &[&[u8]]| parts.concat();
    match scheme {
        // standardwebhooks.com: base64 HMAC of `id.timestamp.body` under the
        // base64-decoded secret, as `v1,<sig>`.
        "standard_webhooks" => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.strip_prefix("whsec_").unwrap())
                .unwrap();
            let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
            let signed = concat(&[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body]);
            with(vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
                (
                    "webhook-signature",
                    format!(
                        "v1,{} v1,{}",
                        b64(b"an older key's"),
                        b64(&mac(&key, &signed))
                    ),
                ),
            ])
        }
        // Stripe: hex HMAC of `t.body`, header `t=<ts>,v1=<sig>`.
        "stripe" => {
            let signed = concat(&[ts.to_string().as_bytes(), b".", body]);
            let sig = hex(&mac(secret.as_bytes(), &signed));
            with(vec![(
                "stripe-signature",
                format!("t={ts},v1={sig},v0=ignored"),
            )])
        }
        // GitHub: `sha256=` + hex HMAC of the body.
        "github" => with(vec![
            (
                "x-hub-signature-256",
                format!("sha256={}", hex(&mac(secret.as_bytes(), body))),
            ),
            (
                "x-github-delivery",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned(),
            ),
            ("x-github-event", "push".to_owned()),
        ]),
        // Slack: `v0=` + hex HMAC of `v0:<ts>:<body>`.
        "slack" => {
            let signed = concat(&[b"v0:", ts.to_string().as_bytes(), b":", body]);
            with(vec![
                ("x-slack-request-timestamp", ts.to_string()),
                (
                    "x-slack-signature",
                    format!("v0={}", hex(&mac(secret.as_bytes(), &signed))),
                ),
            ])
        }
        // Shopify: base64 HMAC of the body.
        "shopify" => with(vec![
            ("x-shopify-hmac-sha256", b64(&mac(secret.as_bytes(), body))),
            (
                "x-shopify-webhook-id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".to_owned(),
            ),
            ("x-shopify-topic", "orders/create".to_owned()),
        ]),
        // Anything else: here `X-Signature: sha256=<hex>`.
        "hmac" => with(vec![(
            "x-signature",
            format!("sha256={}", hex(&mac(secret.as_bytes(), body))),
        )]),
        other => panic!("no scheme {other}"),
    }
}

async fn deliver(server: &Server, source: &str, request: &Signed) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("content-type", "application/json")])
        .collect();
    server
        .send(
            "POST",
            &format!("/hooks/default/{source}"),
            &headers,
            request.body.clone(),
        )
        .await
}

async fn put_source(server: &Server, name: &str, verify: Value) {
    let (status, answer) = server
        .call(
            "PUT",
            &format!("/namespaces/default/sources/{name}"),
            Some(json!({"topic": format!("{name}-events"), "verify": verify, "key": "request.body.customer"})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

async fn head(server: &Server, name: &str) -> u64 {
    let (_, topic) = server
        .get(&format!("/namespaces/default/topics/{name}-events"))
        .await;
    topic["head_seq"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn every_provider_scheme_is_verified_and_forgeries_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    // (scheme, secret, the event id and type the provider's request carries)
    let schemes = [
        (
            "standard_webhooks",
            WHSEC,
            Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
            "invoice.paid",
        ),
        ("stripe", SECRET, Some("evt_1"), "invoice.paid"),
        (
            "github",
            SECRET,
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            "push",
        ),
        ("slack", SECRET, Some("Ev1"), "app_mention"),
        (
            "shopify",
            SECRET,
            Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
            "orders/create",
        ),
        ("hmac", SECRET, None, ""),
    ];
    for (scheme, secret, id, kind) in schemes {
        let mut verify = json!({"scheme": scheme, "secret": secret});
        if scheme == "hmac" {
            verify = json!({"scheme": "hmac", "secret": secret, "header": "X-Signature", "prefix": "sha256="});
        }
        put_source(&server, scheme, verify).await;
        let body = json!({
            "id": "evt_1", "type": "invoice.paid", "customer": "c42",
            "event_id": "Ev1", "event": {"type": "app_mention"}
        })
        .to_string();
        let good = sign(scheme, secret, now_s(), body.as_bytes());

        let mut tampered = sign(scheme, secret, now_s(), body.as_bytes());
        tampered.body = body.replace("c42", "c43").into_bytes();
        assert_error(
            &deliver(&server, scheme, &tampered).await,
            401,
            "unauthenticated",
        );
        let wrong_secret = if scheme == "standard_webhooks" {
            "whsec_bm90IHRoZSBzZWNyZXQ="
        } else {
            "not the secret"
        };
        let forged = sign(scheme, wrong_secret, now_s(), body.as_bytes());
        assert_error(
            &deliver(&server, scheme, &forged).await,
            401,
            "unauthenticated",
        );
        if ["standard_webhooks", "stripe", "slack"].contains(&scheme) {
            let stale = sign(scheme, secret, now_s() - 600, body.as_bytes());
            assert_error(
                &deliver(&server, scheme, &stale).await,
                401,
                "unauthenticated",
            );
        }
        let mut unsigned = sign(scheme, secret, now_s(), body.as_bytes());
        unsigned.headers.clear();
        assert_error(
            &deliver(&server, scheme, &unsigned).await,
            401,
            "unauthenticated",
        );
        assert_eq!(
            head(&server, scheme).await,
            0,
            "{scheme}: a refused request stores nothing"
        );

        let (status, published) = deliver(&server, scheme, &good).await;
        assert_eq!(status, 200, "{scheme}: {published}");
        assert_eq!(published["seq"], 1, "{scheme}");
        if let Some(id) = id {
            assert_eq!(
                published["id"], id,
                "{scheme}: the provider's delivery id is the event id"
            );
        }
        let (_, event) = server
            .get(&format!(
                "/namespaces/default/topics/{scheme}-events/events/{}",
                published["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(event["type"], kind, "{scheme}: {event}");
        assert_eq!(event["key"], "c42", "{scheme}");
        assert_eq!(event["data"]["customer"], "c42", "{scheme}");
        assert_eq!(event["source"], format!("/v1/hooks/default/{scheme}"));
    }
}

#[tokio::test]
async fn a_provider_retry_is_a_duplicate_and_slack_challenges_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    put_source(
        &server,
        "github",
        json!({"scheme": "github", "secret": SECRET}),
    )
    .await;
    let body = br#"{"customer":"c1"}"#;
    let first = deliver(&server, "github", &sign("github", SECRET, 0, body)).await;
    let retry = deliver(&server, "github", &sign("github", SECRET, 0, body)).await;
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(
        (retry.1["seq"].clone(), retry.1["duplicate"].clone()),
        (json!(1), json!(true)),
        "GitHub's redelivery carries the same X-GitHub-Delivery: {retry:?}"
    );
    assert_eq!(head(&server, "github").await, 1);

    put_source(
        &server,
        "slack",
        json!({"scheme": "slack", "secret": SECRET}),
    )
    .await;
    let challenge = br#"{"type":"url_verification","token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let (status, answer) =
        deliver(&server, "slack", &sign("slack", SECRET, now_s(), challenge)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(
        head(&server, "slack").await,
        0,
        "a challenge is not an event"
    );
    let forged = sign("slack", "wrong", now_s(), challenge);
    assert_error(
        &deliver(&server, "slack", &forged).await,
        401,
        "unauthenticated",
    );

    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(r#"keel_webhooks_received_total{namespace="default",source="github",outcome="duplicate"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn sources_are_managed_and_never_show_their_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let path = "/namespaces/default/sources/stripe";
    let spec =
        json!({"topic": "payments", "verify": {"scheme": "stripe", "secret": "whsec_live_value"}});
    let (status, created) = server.call("PUT", path, Some(spec.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["ingress"], "/v1/hooks/default/stripe");
    assert_eq!(created["verify"]["tolerance_ms"], 300_000);
    let (status, _) = server.call("PUT", path, Some(spec)).await;
    assert_eq!(status, 200);
    let (_, got) = server.get(path).await;
    let (_, list) = server.get("/namespaces/default/sources").await;
    for shown in [&created, &got, &list] {
        assert!(
            !shown.to_string().contains("whsec_live_value"),
            "the secret is never shown: {shown}"
        );
    }
    assert_eq!(list["sources"].as_array().unwrap().len(), 1);

    for (bad, says) in [
        (
            json!({"topic": "t", "verify": {"scheme": "hmac", "secret": "s"}}),
            "header",
        ),
        (
            json!({"topic": "t", "verify": {"scheme": "github", "secret": "s"}, "key": "input.x"}),
            "request",
        ),
        (
            json!({"topic": "t", "verify": {"scheme": "magic", "secret": "s"}}),
            "magic",
        ),
    ] {
        let answer = server
            .call("PUT", "/namespaces/default/sources/bad", Some(bad))
            .await;
        assert_eq!(answer.0, 400, "{answer:?}");
        assert!(answer.1.to_string().contains(says), "{answer:?}");
    }

    // The CLI: a file names the source beside the fields of its PUT.
    let file = dir.path().join("github.yaml");
    std::fs::write(
        &file,
        "name: github\ntopic: gh\nverify: { scheme: github, secret: cli-secret }\n",
    )
    .unwrap();
    let (ok, out, err) = server.cli(&["source", "put", file.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("github  github → topic gh  ingress /v1/hooks/default/github"),
        "{out}"
    );
    let (ok, out, _) = server.cli(&["source", "list", "--json"]).await;
    assert!(ok);
    assert!(!out.contains("cli-secret"), "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let (status, _) = server.call("DELETE", path, None).await;
    assert_eq!(status, 204);
    let signed = sign("stripe", "whsec_live_value", now_s(), b"{}");
    assert_error(&deliver(&server, "stripe", &signed).await, 404, "not_found");
    assert_error(&server.get(path).await, 404, "not_found");
}

#[tokio::test]
async fn no_secret_or_signature_reaches_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, logs) = Server::start_logged(&dir, &[]).await;
    // Letters no hex id has: a request id or a UUID cannot contain it.
    let body = json!({"customer": "quartz-42"}).to_string();
    let mut sent = vec![SECRET.to_owned(), WHSEC.to_owned()];
    for (scheme, secret) in [("github", SECRET), ("standard_webhooks", WHSEC)] {
        put_source(&server, scheme, json!({"scheme": scheme, "secret": secret})).await;
        let good = sign(scheme, secret, now_s(), body.as_bytes());
        let forged = sign(
            scheme,
            "whsec_bm90IHRoZSBzZWNyZXQ=",
            now_s(),
            body.as_bytes(),
        );
        for request in [&good, &forged] {
            sent.extend(
                request
                    .headers
                    .iter()
                    .filter(|(name, _)| name.contains("signature"))
                    .map(|(_, value)| value.clone()),
            );
        }
        assert_eq!(deliver(&server, scheme, &good).await.0, 200);
        assert_eq!(deliver(&server, scheme, &forged).await.0, 401);
        assert_eq!(server.get("/namespaces/default/sources").await.0, 200);
    }
    // The forged delivery's answer is the last one: once its line is
    // there, every earlier request's lines are too.
    logs.wait_for("status=200").await;
    logs.wait_for("status=401").await;
    let lines = logs.lines();
    assert!(lines.len() >= 8, "the check reads real lines: {lines:?}");
    let key = SECRET.to_owned();
    for line in &lines {
        for secret in sent.iter().chain([&key]) {
            assert!(
                !line.contains(secret.as_str()),
                "{secret:?} in the log: {line}"
            );
        }
        assert!(
            !line.contains("quartz-42"),
            "a request body in the log: {line}"
        );
    }
}

/// Regression: webhook ingestion published without the namespace's quotas
/// (only the API's enqueue and publish took them). A spent publish rate and
/// `max_bytes` refuse an ingest with 429, and nothing is stored.
#[tokio::test]
async fn an_ingest_takes_the_namespace_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    put_source(
        &s,
        "crm",
        json!({"scheme": "hmac", "secret": "s3cret", "header": "X-Signature", "prefix": "sha256="}),
    )
    .await;
    let (status, _) = s
        .call(
            "PUT",
            "/v1/namespaces/default",
            Some(json!({"max_publish_per_second": 2, "max_bytes": 100})),
        )
        .await;
    assert_eq!(status, 200);
    let hook = |n: usize| {
        sign(
            "hmac",
            "s3cret",
            now_s(),
            format!("{{\"customer\":\"c1\",\"n\":{n}}}").as_bytes(),
        )
    };
    let mut accepted = 0;
    let started = std::time::Instant::now();
    let refused = loop {
        let answer = deliver(&s, "crm", &hook(accepted)).await;
        if answer.0 == 429 {
            break answer;
        }
        assert_eq!(answer.0, 200, "{answer:?}");
        accepted += 1;
        // The burst of 2, and what the rate gave back meanwhile.
        let refilled = (started.elapsed().as_millis() / 500) as usize;
        assert!(accepted <= 2 + refilled, "more than the burst got through");
    };
    assert_error(&refused, 429, "rate_limited");
    let (_, topic) = s.get("/namespaces/default/topics/crm-events").await;
    assert_eq!(topic["events"], accepted, "a refused ingest stores nothing");

    // The rate aside, an event past max_bytes is refused too.
    let (status, _) = s
        .call(
            "PUT",
            "/v1/namespaces/default",
            Some(json!({"max_bytes": 100})),
        )
        .await;
    assert_eq!(status, 200);
    let big = format!("{{\"customer\":\"c1\",\"pad\":\"{}\"}}", "x".repeat(200));
    let answer = deliver(&s, "crm", &sign("hmac", "s3cret", now_s(), big.as_bytes())).await;
    assert_error(&answer, 429, "quota_exceeded");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_bytes"),
        "{answer:?}"
    );
    let (_, topic) = s.get("/namespaces/default/topics/crm-events").await;
    assert_eq!(topic["events"], accepted);
}
