//! Slow and greedy clients: what a client may hold of the server is bounded
//! (connections, time for a request head and a body, memory for bodies
//! being read), each bound answers with its coded error or a close, and
//! everyone else keeps being served meanwhile. Raw TCP, so each test
//! controls exactly what a client sends and when.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::Duration;

use common::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any bound these tests set, far shorter than the defaults.
const SLACK: Duration = Duration::from_secs(10);

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
/// Fails the test if the server keeps it open past `SLACK`.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(SLACK, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    assert!(read.await.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer.
fn body(answer: &str) -> Value {
    serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap()
}

async fn still_served(server: &Server) {
    let (status, _) = server.get("/namespaces/default/queues/q").await;
    assert_eq!(status, 200, "a well-behaved client is served meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_closed_at_the_header_timeout_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--header-timeout-ms", "500"]).await;
    let addr = addr(&server);
    // 1,000 connections: a third silent, a third with half a request line,
    // a third trickling header lines faster than any idle timeout would
    // notice.
    let mut clients = Vec::new();
    for i in 0..1000 {
        let addr = addr.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            match i % 3 {
                0 => {}
                1 => stream.write_all(b"GET /healthz HT").await.unwrap(),
                _ => {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\n")
                        .await
                        .unwrap();
                    let (mut read, mut write) = stream.into_split();
                    let trickle = tokio::spawn(async move {
                        for n in 0.. {
                            let line = format!("x-{n}: y\r\n");
                            if write.write_all(line.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                    let mut buf = [0u8; 1024];
                    let closed = tokio::time::timeout(SLACK, async {
                        while read.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                    })
                    .await;
                    trickle.abort();
                    assert!(closed.is_ok(), "a trickled head is closed at its deadline");
                    return;
                }
            }
            until_closed(&mut stream).await;
        }));
    }
    still_served(&server).await;
    for client in clients {
        client.await.unwrap();
    }
    still_served(&server).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--header-timeout-ms", "300"]).await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: keel\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn past_max_connections_a_client_is_told_429_overloaded_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--max-connections", "20"]).await;
    let addr = addr(&server);
    // Twenty connections, each with a request answered: every slot is taken.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: keel\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: keel\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut extra).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "overloaded");

    // One held connection closes: its slot serves the next client.
    drop(held.pop());
    let retried = tokio::time::timeout(SLACK, async {
        loop {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: keel\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let answer = until_closed(&mut stream).await;
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
            // The server has not seen the close yet: its answer says when
            // to come back; a test need not wait that long.
            tokio::task::yield_now().await;
        }
    });
    assert!(retried.await.is_ok(), "a freed slot is used again");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--body-timeout-ms", "300"]).await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(
            b"POST /v1/namespaces/default/queues/q/jobs HTTP/1.1\r\nhost: keel\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"payload\":",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(body(&answer)["error"]["code"], "request_timeout");
    let (status, stats) = server.get("/namespaces/default/queues/q").await;
    assert_eq!(
        (status, &stats["counts"]["ready"]),
        (200, &json!(0)),
        "{stats}"
    );
}

#[tokio::test]
async fn bodies_past_the_memory_budget_are_refused_429_while_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--max-body-bytes-in-flight", "1000"]).await;
    let addr = addr(&server);
    // A client declares 800 bytes and sends them slowly: they are reserved.
    let payload = format!(r#"{{"payload":"{}"}}"#, "x".repeat(786));
    assert_eq!(payload.len(), 800);
    let head = format!(
        "POST /v1/namespaces/default/queues/q/jobs HTTP/1.1\r\nhost: keel\r\ncontent-type: application/json\r\ncontent-length: 800\r\nconnection: close\r\n\r\n{}",
        &payload[..10]
    );
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(head.as_bytes()).await.unwrap();
    // Until the server has read that head, another body may still fit; and
    // when another body holds its share just as the slow head is read, the
    // slow one is the body refused: then it comes again.
    let refused = tokio::time::timeout(SLACK, async {
        loop {
            let (status, answer) = server
                .post(
                    "/namespaces/default/queues/q/jobs",
                    json!({"payload": "y".repeat(300)}),
                )
                .await;
            if status == 429 {
                return answer;
            }
            assert_eq!(status, 201, "{answer}");
            let mut peek = [0u8; 1];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.peek(&mut peek)).await
            {
                slow = TcpStream::connect(&addr).await.unwrap();
                slow.write_all(head.as_bytes()).await.unwrap();
            }
        }
    })
    .await
    .expect("a body past the budget is refused");
    assert_eq!(refused["error"]["code"], "overloaded", "{refused}");
    // A request with no body takes none of the budget.
    still_served(&server).await;
    // The slow body completes and is enqueued; its reservation is released.
    slow.write_all(&payload.as_bytes()[10..]).await.unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let (status, answer) = server
        .post(
            "/namespaces/default/queues/q/jobs",
            json!({"payload": "y".repeat(300)}),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}
