//! OAuth2 connections against a real authorization server started by the
//! test (`common::oauth`): the whole dance through the real binary, calls
//! made as a connection (the proxy, a handler's fetch, an `http` step)
//! without a token ever shown, no plaintext secret in the store's files or
//! the logs, the keys' rotation; one refresh for a burst of calls across
//! three PostgreSQL nodes; and a node killed between the provider's answer
//! and the commit, which leaves the connection flagged, never silently
//! stale.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration tests: a panic is a failed check"
)]

mod common;

use common::oauth::{CLIENT_SECRET, Provider, connect};
use common::{Server, eventually};
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

async fn put_integration(server: &Server, provider: &Provider) {
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/integrations/acme"),
            Some(provider.integration(&server.url)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn call_me(server: &Server, provider: &Provider, connection: &str) -> (u16, Value) {
    server
        .post(
            &format!("{NS}/connections/{connection}/requests"),
            json!({"url": format!("{}/api/me", provider.url)}),
        )
        .await
}

/// Every file under `dir`, as bytes.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_end_user_connects_and_calls_are_made_as_them_without_a_token_shown() {
    let provider = Provider::start(Some(3600), Some(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, logs) = Server::start_logged(&dir, &["--allow-private-http"]).await;
    put_integration(&server, &provider).await;
    let (_, shown) = server.get(&format!("{NS}/integrations/acme")).await;
    assert_eq!(shown["client_secret_set"], true, "{shown}");
    assert!(!shown.to_string().contains(CLIENT_SECRET));

    // The dance: consent, then Keel's callback sends the browser on.
    let (status, location) =
        connect(&server, "acme", "user-1", Some("https://app.example/done")).await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("https://app.example/done?connection=user-1&status=connected")
    );
    let (_, connection) = server.get(&format!("{NS}/connections/user-1")).await;
    assert_eq!(connection["status"], "active", "{connection}");
    assert_eq!(connection["version"], 1);
    assert_eq!(connection["has_refresh_token"], true);
    let (_, events) = server
        .get(&format!("{NS}/topics/keel.connections/events"))
        .await;
    assert_eq!(
        events["events"][0]["type"], "connection.created",
        "{events}"
    );

    // A state is good once.
    let (_, session) = server
        .post(
            &format!("{NS}/integrations/acme/connect-sessions"),
            json!({"connection": "user-2"}),
        )
        .await;
    let state = session["state"].as_str().unwrap();
    let callback = |query: String| {
        let url = format!("{}/oauth/callback?{query}", server.url);
        async move {
            let answer = reqwest::get(url).await.unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let (status, body) = callback(format!("state={state}&error=access_denied")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("access_denied"), "{body}");
    let (status, body) = callback(format!("state={state}&code=code-1")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown or expired state"), "{body}");

    // A call as the connection: Keel adds the header.
    let (status, answer) = call_me(&server, &provider, "user-1").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], 200, "{answer}");
    assert!(answer["body"].as_str().unwrap().contains("octocat"));
    // Its tokens go only to the integration's API origins.
    let (status, body) = server
        .post(
            &format!("{NS}/connections/user-1/requests"),
            json!({"url": "http://127.0.0.1:9/steal"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = server
        .post(
            &format!("{NS}/connections/user-1/requests"),
            json!({"url": format!("{}/api/me", provider.url), "headers": {"Authorization": "x"}}),
        )
        .await;
    assert_eq!(status, 400);

    // A handler's fetch as the connection: the guest never holds the token.
    let origin = provider.url.clone();
    let code = format!(
        r#"export default async function (job, ctx) {{
            const r = await ctx.fetch("{origin}/api/me", {{ connection: job.payload.user }});
            return {{ status: r.status, body: await r.json() }};
        }}"#
    );
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/handlers/caller"),
            Some(json!({"js": code, "allow_http": [origin]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, answer) = server
        .post(
            &format!("{NS}/handlers/caller/invoke"),
            json!({"payload": {"user": "user-1"}}),
        )
        .await;
    assert_eq!(answer["result"]["status"], 200, "{answer}");
    assert_eq!(answer["result"]["body"]["user"], "octocat", "{answer}");

    // An `http` step as the connection.
    let definition = json!({
        "name": "profile",
        "steps": {"me": {"http": {
            "method": "GET", "url": format!("{origin}/api/me"), "connection": "${{ input.user }}"
        }}}
    });
    let (status, body) = server
        .call("PUT", &format!("{NS}/workflows/profile"), Some(definition))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let (status, run) = server
        .post(
            &format!("{NS}/workflows/profile/runs"),
            json!({"input": {"user": "user-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let done = eventually("the run finishes", || async {
        let (_, run) = server.get(&format!("{NS}/runs/{id}")).await;
        (run["status"] != "running").then_some(run)
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["me"]["user"], "octocat", "{done}");

    // Nothing secret at rest or in the logs, and the API shows no token.
    let (_, list) = server.get(&format!("{NS}/connections")).await;
    let mut secrets = provider.tokens();
    secrets.push(CLIENT_SECRET.to_owned());
    for secret in &secrets {
        assert!(!list.to_string().contains(secret.as_str()), "{list}");
        for line in logs.lines() {
            assert!(
                !line.contains(secret.as_str()),
                "a secret in the log: {line}"
            );
        }
    }
    let stored = files(dir.path());
    assert!(
        stored.iter().any(|(_, bytes)| holds(bytes, "k1:")),
        "sealed values are stored"
    );
    for (path, bytes) in &stored {
        for secret in &secrets {
            assert!(!holds(bytes, secret), "{secret} in {path}");
        }
    }

    // A rotation seals the three secrets again; they still open after a
    // restart, with the new key.
    let (status, rotated) = server.post("/v1/keys/rotate", json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated, json!({"active": 2, "resealed": 3}));
    // Stopped and waited for: the next one opens the same store.
    assert!(server.terminate().await.success());
    let server = Server::start_in(dir.path(), &["--allow-private-http"]).await;
    let (status, answer) = call_me(&server, &provider, "user-1").await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!(200)),
        "{answer}"
    );

    // Deleting: the connection's tokens are gone, then the integration.
    let (status, _) = server
        .call("DELETE", &format!("{NS}/integrations/acme"), None)
        .await;
    assert_eq!(status, 409, "an integration with connections stays");
    let (status, _) = server
        .call("DELETE", &format!("{NS}/connections/user-1"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = call_me(&server, &provider, "user-1").await;
    assert_eq!(status, 404);
    let (status, _) = server
        .call("DELETE", &format!("{NS}/integrations/acme"), None)
        .await;
    assert_eq!(status, 204);
}

/// Three nodes sharing one keys file on one PostgreSQL schema.
async fn three_nodes(schema: &keel_store_postgres::testing::TestSchema, keys: &str) -> Vec<Server> {
    let url = schema.url();
    let args = [
        "--database-url",
        &url,
        "--keys-file",
        keys,
        "--allow-private-http",
    ];
    vec![
        Server::start_with(&args).await,
        Server::start_with(&args).await,
        Server::start_with(&args).await,
    ]
}

#[tokio::test]
async fn a_hundred_calls_across_three_nodes_make_one_refresh() {
    // The first token is about to expire: every call needs a fresh one.
    let provider = Provider::start(Some(1), Some(3600)).await;
    let schema = keel_store_postgres::testing::TestSchema::create("keel_connections")
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let keys_file = keys.path().join("keys.json");
    let nodes = three_nodes(&schema, keys_file.to_str().unwrap()).await;
    put_integration(&nodes[0], &provider).await;
    let (status, _) = connect(&nodes[0], "acme", "user-1", None).await;
    assert_eq!(status, 200);

    let http = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let url = nodes[i % 3].v1(&format!("{NS}/connections/user-1/requests"));
        let body = json!({"url": format!("{}/api/me", provider.url)});
        let http = http.clone();
        calls.spawn(async move {
            let answer = http.post(url).json(&body).send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        });
    }
    for (status, answer) in calls.join_all().await {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], 200, "{answer}");
    }
    assert_eq!(
        provider.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one token request for the whole burst"
    );
    let (_, connection) = nodes[2].get(&format!("{NS}/connections/user-1")).await;
    assert_eq!(connection["version"], 2, "{connection}");

    // Deleted and connected again, it starts at version 1 anew: its
    // refresh is a new job, not the first one's (same version, same day).
    let (status, _) = nodes[1]
        .call("DELETE", &format!("{NS}/connections/user-1"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = connect(&nodes[1], "acme", "user-1", None).await;
    assert_eq!(status, 200);
    let (status, answer) = call_me(&nodes[2], &provider, "user-1").await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!(200)),
        "{answer}"
    );
    assert_eq!(
        provider.refreshes.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    // Nothing secret in the database.
    let mut secrets = provider.tokens();
    secrets.push(CLIENT_SECRET.to_owned());
    let db = database(&schema).await;
    let rows = db
        .query(
            "SELECT access_token || coalesce(refresh_token, '') FROM keel_connections \
             UNION ALL SELECT client_secret FROM keel_integrations",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let text: String = row.get(0);
        assert!(text.starts_with("k1:"), "{text}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()));
        }
    }
}

#[tokio::test]
async fn a_node_killed_between_the_providers_answer_and_the_commit_leaves_no_silent_stale_connection()
 {
    let provider = Provider::start(Some(1), Some(3600)).await;
    let schema = keel_store_postgres::testing::TestSchema::create("keel_connections")
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let keys_file = keys.path().join("keys.json");
    let url = schema.url();
    let args = [
        "--database-url",
        &url,
        "--keys-file",
        keys_file.to_str().unwrap(),
        "--allow-private-http",
    ];
    let mut first = Server::start_with(&args).await;
    put_integration(&first, &provider).await;
    let (status, _) = connect(&first, "acme", "user-1", None).await;
    assert_eq!(status, 200);

    // Hold the connection's row: the refresh's write waits behind it.
    let mut db = database(&schema).await;
    let hold = db.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM keel_connections WHERE name = 'user-1' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let caller = {
        let url = first.v1(&format!("{NS}/connections/user-1/requests"));
        let body = json!({"url": format!("{}/api/me", provider.url)});
        tokio::spawn(async move { reqwest::Client::new().post(url).json(&body).send().await })
    };
    // The provider answered (and rotated the refresh token); the write of
    // its answer waits on the row.
    let watcher = database(&schema).await;
    let writer = eventually("the refresh's write waits on the row", || async {
        let answered = provider.refreshes.load(std::sync::atomic::Ordering::SeqCst) == 1;
        let rows = watcher
            .query(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE 'UPDATE keel_connections%'",
                &[],
            )
            .await
            .unwrap();
        let pid: Option<i32> = rows.first().map(|r| r.get(0));
        (answered && pid.is_some()).then(|| json!(pid))
    })
    .await;
    first.kill9().await;
    // The write never lands: the node died before its commit.
    watcher
        .execute(
            "SELECT pg_terminate_backend($1)",
            &[&(writer.as_i64().unwrap() as i32)],
        )
        .await
        .unwrap();
    hold.rollback().await.unwrap();
    assert!(caller.await.unwrap().is_err(), "the caller's node died");

    // Another node takes the refresh over once its lease lapses: the
    // provider refuses the rotated-away refresh token, and the connection
    // says it needs its end user, on its topic too.
    let second = Server::start_with(&args).await;
    let connection = eventually("the connection is flagged", || async {
        let (_, c) = second.get(&format!("{NS}/connections/user-1")).await;
        (c["status"] != "active").then_some(c)
    })
    .await;
    assert_eq!(connection["status"], "needs_reauth", "{connection}");
    assert!(
        connection["error"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{connection}"
    );
    // Published right after the write that flagged it.
    let events = eventually("the needs_reauth event", || async {
        let (_, events) = second
            .get(&format!("{NS}/topics/keel.connections/events"))
            .await;
        (events["events"].as_array().unwrap().len() == 2).then_some(events)
    })
    .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["connection.created", "connection.needs_reauth"],
        "{events}"
    );
    let (status, body) = call_me(&second, &provider, "user-1").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("connect again"), "{body}");
    // Connecting again (back to a live node; the stored secret is kept)
    // makes it whole.
    let mut integration = provider.integration(&second.url);
    integration.as_object_mut().unwrap().remove("client_secret");
    let (status, body) = second
        .call("PUT", &format!("{NS}/integrations/acme"), Some(integration))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = connect(&second, "acme", "user-1", None).await;
    assert_eq!(status, 200);
    let (status, answer) = call_me(&second, &provider, "user-1").await;
    assert_eq!(
        (status, answer["status"].clone()),
        (200, json!(200)),
        "{answer}"
    );
}

async fn database(schema: &keel_store_postgres::testing::TestSchema) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&schema.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}
