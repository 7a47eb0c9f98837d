//! HTTPS (`--tls-cert`, `--tls-key`) and request ids, against the real
//! binary with real TLS clients: HTTP/2 and HTTP/1.1 by ALPN, a client
//! that does not trust the issuer refused, no plaintext on the TLS port,
//! the SDK and the CLI through a private CA, `x-request-id` on every answer
//! and in the answer's log line.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::path::PathBuf;

use common::Server;
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/tls/{name}"))
}

fn ca() -> Vec<u8> {
    std::fs::read(fixture("ca.pem")).unwrap()
}

async fn tls_server(dir: &tempfile::TempDir) -> Server {
    let (cert, key) = (fixture("server.pem"), fixture("server.key"));
    Server::start(
        dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await
}

fn trusting(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .add_root_certificate(reqwest::Certificate::from_pem(&ca()).unwrap())
        .https_only(true)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_api_speaks_h2_and_http1_over_tls_and_nothing_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let s = tls_server(&dir).await;
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    // HTTP/2 by ALPN, the default of a client that offers both.
    let h2 = trusting(reqwest::Client::builder());
    let answer = h2
        .post(format!("{}/v1/namespaces/default/queues/q/jobs", s.url))
        .json(&json!({"payload": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 201);

    // HTTP/1.1 for a client that offers only it.
    let h1 = trusting(reqwest::Client::builder().http1_only());
    let answer = h1.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    assert_eq!(answer.status(), 200);

    // A client that does not trust the issuer stops at the handshake.
    let stranger = reqwest::Client::builder().build().unwrap();
    let refused = stranger.get(format!("{}/healthz", s.url)).send().await;
    assert!(refused.is_err_and(|e| e.is_connect()));

    // Plain HTTP to the TLS port gets no answer.
    let clear = s.url.replacen("https://", "http://", 1);
    let plain = reqwest::Client::new()
        .get(format!("{clear}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // The SDK with the CA leases the job.
    let client = keel_client::Client::with_ca_cert(&s.url, Some(&ca())).unwrap();
    let jobs = client
        .lease("default", "q", "w1", 10, 0, None)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);

    // The CLI with --ca-cert reads the queue; without it, it cannot connect.
    let ca_path = fixture("ca.pem");
    let (ok, out, err) = s
        .cli(&[
            "queues",
            "stats",
            "q",
            "--ca-cert",
            ca_path.to_str().unwrap(),
        ])
        .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("leased"), "{out}");
    let (ok, _, err) = s.cli(&["queues", "stats", "q"]).await;
    assert!(!ok);
    assert!(err.contains("error"), "{err}");
}

#[tokio::test]
async fn a_tls_server_drains_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = tls_server(&dir).await;
    let http = trusting(reqwest::Client::builder());
    let answer = http.get(format!("{}/readyz", s.url)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    // A keep-alive connection stays open: the drain must not wait for it.
    assert!(s.terminate().await.success());
}

/// Starts a server that must refuse to start; its stderr.
async fn refused(dir: &tempfile::TempDir, tls: &[&std::ffi::OsStr]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(tls)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn bad_tls_files_stop_the_server_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (fixture("server.pem"), fixture("server.key"));
    let not_pem = dir.path().join("cert.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let err = refused(
        &dir,
        &[
            "--tls-cert".as_ref(),
            not_pem.as_ref(),
            "--tls-key".as_ref(),
            key.as_ref(),
        ],
    )
    .await;
    assert!(err.contains("cert.pem"), "{err}");
    assert!(err.contains("no certificate"), "{err}");

    // A key file that holds no key.
    let no_key = dir.path().join("other.key");
    std::fs::write(
        &no_key,
        std::fs::read_to_string(&key)
            .unwrap()
            .replace("PRIVATE KEY", "CERTIFICATE"),
    )
    .unwrap();
    let err = refused(
        &dir,
        &[
            "--tls-cert".as_ref(),
            cert.as_ref(),
            "--tls-key".as_ref(),
            no_key.as_ref(),
        ],
    )
    .await;
    assert!(err.contains("other.key"), "{err}");

    // One without the other is a usage error.
    let err = refused(&dir, &["--tls-cert".as_ref(), cert.as_ref()]).await;
    assert!(err.contains("--tls-key"), "{err}");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_its_log_line_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, logs) = Server::start_logged(&dir, &[]).await;
    let http = reqwest::Client::new();
    let id_of = |answer: &reqwest::Response| {
        answer
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // Made by the server: distinct, one per answer, errors included.
    let mut seen = std::collections::HashSet::new();
    for path in [
        "/healthz",
        "/v1/namespaces/default/jobs/00000000-0000-7000-8000-000000000000",
        "/v1/nowhere",
        "/v1/namespaces/default/queues/q",
    ] {
        let answer = http.get(format!("{}{path}", s.url)).send().await.unwrap();
        let id = id_of(&answer).unwrap_or_else(|| panic!("no request id on {path}"));
        assert_eq!(id.len(), 36, "{id}");
        assert!(seen.insert(id));
    }
    // Each answer's log line names its id, with its status.
    for id in &seen {
        let named = format!("request{{id={id}}}");
        logs.wait_for(&named).await;
        let lines = logs.lines();
        let line = lines.iter().find(|l| l.contains(&named)).unwrap();
        assert!(
            line.contains("answered") && line.contains("status="),
            "{line}"
        );
    }
    // A caller's plain id is kept; anything else is replaced.
    let answer = http
        .get(format!("{}/healthz", s.url))
        .header("x-request-id", "gw:trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&answer).as_deref(), Some("gw:trace-42.a_b"));
    let long = "a".repeat(200);
    for given in ["two words", long.as_str(), "quote\"d"] {
        let answer = http
            .get(format!("{}/healthz", s.url))
            .header("x-request-id", given)
            .send()
            .await
            .unwrap();
        let id = id_of(&answer).unwrap();
        assert_ne!(id, given);
        assert_eq!(id.len(), 36);
    }
}
