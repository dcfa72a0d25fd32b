//! HTTP hygiene: header limits, slow clients, framing, graceful shutdown.

use std::time::{Duration, Instant};

use muon_tests::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_exchange(server: &Server, request: &[u8]) -> anyhow::Result<String> {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_get_431() -> anyhow::Result<()> {
    let server = Server::start(&["--max-headers", "20", "--max-header-bytes", "8192"]).await?;
    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..40 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(raw_exchange(&server, many.as_bytes()).await?.starts_with("HTTP/1.1 431"));
    let large = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw_exchange(&server, large.as_bytes()).await?.starts_with("HTTP/1.1 431"));
    let fine = raw_exchange(&server, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    // Public, so the body is read without a key.
    server.deploy_ok("hello", "hello", "public=true").await?;
    let smuggle = b"POST /fn/default/hello HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde";
    assert!(raw_exchange(&server, smuggle).await?.starts_with("HTTP/1.1 400"));
    let bad_chunk =
        b"POST /fn/default/hello HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    let answer = raw_exchange(&server, bad_chunk).await?;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_closed_at_the_header_timeout() -> anyhow::Result<()> {
    let server = Server::start(&["--header-read-timeout-ms", "500"]).await?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await?;
    let started = Instant::now();
    // Another client is served while the slow one trickles.
    assert_eq!(server.http.get(server.url("/healthz")).send().await?.status(), 200);
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the slow connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() -> anyhow::Result<()> {
    let mut server = Server::start(&["--shutdown-grace-ms", "5000"]).await?;
    server.deploy_ok("slow", "fixture-sleep", "").await?;
    let in_flight = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/slow?ms=1000"));
        async move { anyhow::Ok(request.send().await?.text().await?) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM")?;
    assert_eq!(in_flight.await??, "woke up");
    assert_eq!(server.wait(Duration::from_secs(10)).await?, Some(0));
    let refused = reqwest::Client::new().get(server.url("/healthz")).send().await;
    assert!(refused.is_err(), "a stopped server accepts no connections");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_also_stops_cleanly() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    server.signal("INT")?;
    assert_eq!(server.wait(Duration::from_secs(10)).await?, Some(0));
    Ok(())
}
