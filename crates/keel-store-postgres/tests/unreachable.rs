//! A database that goes away (restarting, a network cut) is 503
//! `storage_unavailable` with a retry hint, never a 500, and the store works
//! again when it comes back. The store reaches PostgreSQL through a TCP
//! relay in the test, which the test cuts and restores. Found by
//! `scripts/chaos pg-restart`: calls in flight answered 500 `internal`; and
//! by `scripts/chaos pg-partition`: a database that stopped answering, with
//! its connections left open, held every call until it was back.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::{ErrorCode, Limits, Namespace, NewJob, QueueName, QueueRef, Timestamp};
use keel_store::{JobStore, QueueStore, Store};
use keel_store_postgres::PostgresStore;
use keel_store_postgres::testing::{TestSchema, base_url};
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Relays connections on `listener` to PostgreSQL until aborted; aborting
/// drops every relayed connection too.
fn relay(listener: TcpListener, upstream: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pipes = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            pipes.spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })
}

/// Relays connections on `listener` to PostgreSQL, moving bytes only while
/// `open` says so: closed, it holds them and closes nothing, as a network
/// dropping packets or a database that hangs.
fn pausable_relay(listener: TcpListener, upstream: String, open: watch::Receiver<bool>) {
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, open) = (upstream.clone(), open.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    pump(client_read, server_write, open.clone()),
                    pump(server_read, client_write, open)
                );
            });
        }
    });
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut open: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        let Ok(n @ 1..) = from.read(&mut buf).await else {
            return;
        };
        if open.wait_for(|o| *o).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn job() -> NewJob {
    NewJob {
        max_attempts: 3,
        ..NewJob::new(
            RawValue::from_string("{}".to_owned()).unwrap(),
            Timestamp::from_millis(1_000),
        )
    }
}

/// PostgreSQL's `host:port` in the test database's URL.
fn database_host() -> String {
    base_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_database_that_stops_answering_is_503_within_seconds_until_it_answers() {
    let schema = TestSchema::create("keel_hung").await.unwrap();
    let host = database_host();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (open, is_open) = watch::channel(true);
    pausable_relay(listener, host.clone(), is_open);
    let url = schema
        .url()
        .replacen(&host, &format!("127.0.0.1:{port}"), 1);
    let store = PostgresStore::open(&url, &Limits::default()).await.unwrap();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("q").unwrap(),
    };
    let now = Timestamp::from_millis(1_000);
    store.jobs_enqueue(&queue, vec![job()], now).await.unwrap();

    open.send_replace(false);
    // A connection handed out in the last 100 ms is used unchecked (the
    // store's `check_if_idle`): this read comes after that.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    let e = store.queue_stats(&queue).await.unwrap_err();
    let took = asked.elapsed();
    assert_eq!(e.code, ErrorCode::StorageUnavailable, "{e:?}");
    // The checkout's bound (5 s), not the partition's length.
    assert!(
        took < std::time::Duration::from_secs(7),
        "answered after {took:?}"
    );

    open.send_replace(true);
    store.jobs_enqueue(&queue, vec![job()], now).await.unwrap();
    let counts = store.queue_stats(&queue).await.unwrap().counts;
    assert_eq!(counts.get(&keel_core::JobState::Ready), Some(&2));
    store.close().await;
}

#[tokio::test]
async fn a_database_gone_away_is_503_storage_unavailable_until_it_is_back() {
    let schema = TestSchema::create("keel_unreachable").await.unwrap();
    let direct = schema.url();
    let host = database_host();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut relayed = relay(listener, host.clone());
    let url = direct.replacen(&host, &format!("127.0.0.1:{port}"), 1);
    let store = PostgresStore::open(&url, &Limits::default()).await.unwrap();
    let queue = QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new("q").unwrap(),
    };
    let now = Timestamp::from_millis(1_000);
    store.jobs_enqueue(&queue, vec![job()], now).await.unwrap();

    relayed.abort();
    let _ = relayed.await;
    let e = store
        .jobs_enqueue(&queue, vec![job()], now)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StorageUnavailable, "{e:?}");
    assert_eq!(e.code.http_status(), 503);
    assert_eq!(e.retry_after_ms, Some(1000));
    let e = store.queue_stats(&queue).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::StorageUnavailable, "{e:?}");

    // Back on the same port: new connections work.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    relayed = relay(listener, host);
    store.jobs_enqueue(&queue, vec![job()], now).await.unwrap();
    relayed.abort();
    store.close().await;
}
