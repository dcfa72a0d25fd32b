//! Request bodies cannot exhaust the host: a trickled body costs what it
//! sent, not kilobytes per byte; a body must arrive in time; and all bodies
//! in flight share one memory budget (issue 9, item 2).

use std::time::{Duration, Instant};

use muon_tests::{MIB, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::Conn;

/// Opens a connection, sends a `POST path` head declaring `declared` body
/// bytes and then `bytes` of it one write at a time, `gap` apart.
pub async fn drip(
    address: &str,
    path: &str,
    declared: usize,
    bytes: usize,
    gap: Duration,
) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let head = format!("POST {path} HTTP/1.1\r\nhost: muon\r\ncontent-length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    for _ in 0..bytes {
        stream.write_all(b"x").await?;
        tokio::time::sleep(gap).await;
    }
    Ok(stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_trickled_a_byte_at_a_time_hold_little_memory() -> anyhow::Result<()> {
    const CONNECTIONS: usize = 300;
    const BYTES: usize = 400;
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "public=true").await?;
    for _ in 0..20 {
        server.get_fn("hello", "").await?;
    }
    let before = server.memory()?.rss_bytes;
    let started = Instant::now();
    let drips: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let address = server.address().to_owned();
            tokio::spawn(
                async move { drip(&address, "/fn/default/hello", 100_000, BYTES, Duration::from_millis(3)).await },
            )
        })
        .collect();
    let mut streams = Vec::new();
    for drip in drips {
        streams.push(drip.await??);
    }
    let during = server.memory()?.rss_bytes;
    let dripped = CONNECTIONS * BYTES;
    drop(streams);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.memory()?.rss_bytes;
    eprintln!(
        "{dripped} bytes dripped over {CONNECTIONS} connections in {:?}: RSS {} MiB before, {} MiB while held, {} MiB after close",
        started.elapsed(),
        before >> 20,
        during >> 20,
        after >> 20
    );
    assert!(during < before + 48 * MIB, "RSS grew by {} MiB while bodies trickled in", (during - before) >> 20);
    assert!(after < before + 48 * MIB, "RSS stayed {} MiB higher after the connections closed", (after - before) >> 20);
    assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_do_not_arrive_in_time_get_408_and_a_close() -> anyhow::Result<()> {
    let server = Server::start(&["--body-read-timeout-ms", "1000"]).await?;
    server.deploy_ok("hello", "hello", "public=true").await?;
    let stream = TcpStream::connect(server.address()).await?;
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // A byte every 100 ms for longer than the deadline: a trickle keeps nothing alive.
    let trickle = tokio::spawn(async move {
        let _ =
            writer.write_all(b"POST /fn/default/hello HTTP/1.1\r\nhost: muon\r\ncontent-length: 1000\r\n\r\n").await;
        for _ in 0..50 {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), reader.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "the connection was still open after {elapsed:?}: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "answered after {elapsed:?}");
    // A body that comes in time is served.
    let mut conn = Conn::open(&server).await?;
    assert_eq!(conn.request("POST", "/fn/default/hello", "", b"quick").await?.status, 200);
    // Deploys and model uploads read their bodies the same way.
    for path in ["/v1/functions/slow", "/v1/models/slow"] {
        let mut conn = Conn::open(&server).await?;
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: muon\r\nauthorization: Bearer {}\r\ncontent-length: 1000\r\n\r\nab",
            server.admin_key
        );
        conn.send(head.as_bytes()).await?;
        let answer = conn.response().await?;
        assert_eq!((answer.status, answer.error_code().as_str()), (408, "body_timeout"), "{path}");
        assert_eq!(conn.rest_until_close(Duration::from_secs(2)).await, Some(Vec::new()), "{path}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_past_the_memory_budget_get_503_until_it_frees() -> anyhow::Result<()> {
    let server = Server::start(&[
        "--max-request-bytes",
        "65536",
        "--max-deploy-bytes",
        "131072",
        "--max-model-bytes",
        "65536",
        "--max-inflight-body-bytes",
        "262144",
    ])
    .await?;
    server.deploy_ok("hello", "hello", "public=true").await?;
    // Four bodies of 64 KiB, nearly all sent and held open, fill the 256 KiB budget.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = drip(server.address(), "/fn/default/hello", 65536, 0, Duration::ZERO).await?;
        stream.write_all(&[b'x'; 65000]).await?;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = Conn::open(&server).await?;
    let refused = conn.request("POST", "/fn/default/hello", "", b"one more").await?;
    assert_eq!((refused.status, refused.error_code().as_str()), (503, "bodies_busy"), "{}", refused.text());
    assert_eq!(refused.all("retry-after"), ["1"]);
    // Requests without a body need no budget.
    assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    // One sender gives up: its share comes back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut conn = Conn::open(&server).await?;
        let status = conn.request("POST", "/fn/default/hello", "", b"one more").await?.status;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {status} after a body was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_are_cut_off_at_the_limit_with_413_and_a_close() -> anyhow::Result<()> {
    let server = Server::start(&["--max-request-bytes", "1024"]).await?;
    server.deploy_ok("hello", "hello", "public=true").await?;
    let mut conn = Conn::open(&server).await?;
    conn.send(b"POST /fn/default/hello HTTP/1.1\r\nhost: muon\r\ntransfer-encoding: chunked\r\n\r\n").await?;
    // Three chunks of 512 bytes and no end: the answer must not wait for one.
    for _ in 0..3 {
        conn.send(format!("200\r\n{}\r\n", "x".repeat(512)).as_bytes()).await?;
    }
    let answer = conn.response().await?;
    assert_eq!((answer.status, answer.error_code().as_str()), (413, "body_too_large"));
    assert_eq!(conn.rest_until_close(Duration::from_secs(2)).await, Some(Vec::new()));
    Ok(())
}
