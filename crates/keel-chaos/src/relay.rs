//! A TCP relay between one node and PostgreSQL that can be partitioned.
//!
//! Cut, it stops moving bytes both ways and closes nothing, as a network
//! that drops every packet: the node's connections stay open and hang,
//! what it sends waits in the socket buffers, and new connections are
//! accepted but get no answer. Healed, the bytes held back flow again, as
//! TCP's retransmissions deliver them once a partition ends. (A network
//! namespace with nftables dropping packets gives the same to the node, but
//! needs the database to listen beyond loopback; the relay changes nothing
//! on the machine.)

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) struct Relay {
    pub(crate) port: u16,
    open: watch::Sender<bool>,
}

impl Relay {
    /// Listens on a free loopback port and relays to `target`, open.
    pub(crate) async fn start(target: SocketAddr) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (open, is_open) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let is_open = is_open.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, is_open.clone()),
                        pump(server_read, client_write, is_open),
                    );
                });
            }
        });
        Ok(Relay { port, open })
    }

    /// The partition: no byte moves until [`Relay::heal`].
    pub(crate) fn cut(&self) {
        self.open.send_replace(false);
    }

    pub(crate) fn heal(&self) {
        self.open.send_replace(true);
    }
}

/// Copies `from` to `to` while the relay is open; holds what it read while
/// it is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut is_open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if is_open.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if is_open.wait_for(|open| *open).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
