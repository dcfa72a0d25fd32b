//! Test support for the HTTP hardening tests: keep-alive connections spoken
//! to byte by byte, and the server's resident memory.

use std::time::Duration;

use anyhow::{Context, bail};
use muon_tests::Server;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One response as it came off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-case names, in wire order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// A keep-alive connection that reads responses exactly as framed.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to the server.
    pub async fn open(server: &Server) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(server.address()).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream) })
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        Ok(())
    }

    /// Sends a request with `body` (and its length) and reads the response.
    pub async fn request(&mut self, method: &str, path: &str, extra: &str, body: &[u8]) -> anyhow::Result<RawResponse> {
        let head = format!("{method} {path} HTTP/1.1\r\nhost: muon\r\ncontent-length: {}\r\n{extra}\r\n", body.len());
        self.send(head.as_bytes()).await?;
        self.send(body).await?;
        self.response().await
    }

    /// Reads one response, framed by its `content-length` as a client would.
    pub async fn response(&mut self) -> anyhow::Result<RawResponse> {
        tokio::time::timeout(Duration::from_secs(20), self.read_response()).await.context("no response within 20 s")?
    }

    async fn read_response(&mut self) -> anyhow::Result<RawResponse> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not a status line: {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("the connection closed inside a response head");
            }
            let header = line.trim_end_matches(['\r', '\n']);
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').with_context(|| format!("bad header line {header:?}"))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked");
        if chunked && !headers.iter().any(|(n, _)| n == "content-length") {
            // A streamed body (wasi:http, streaming handlers).
            let body = self.chunked_body().await?;
            return Ok(RawResponse { status, headers, body });
        }
        let lengths: Vec<usize> =
            headers.iter().filter(|(n, _)| n == "content-length").filter_map(|(_, v)| v.parse().ok()).collect();
        let length = match (status, lengths.as_slice()) {
            (100..=199 | 204 | 304, _) => 0,
            (_, [length]) => *length,
            _ => {
                bail!("status {status} with content-length {lengths:?}: the client cannot frame it")
            }
        };
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(RawResponse { status, headers, body })
    }

    /// A chunked body: hex size lines, each chunk and its CRLF, until the
    /// empty chunk (no trailers are expected).
    async fn chunked_body(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let size =
                usize::from_str_radix(line.trim_end(), 16).with_context(|| format!("bad chunk size {line:?}"))?;
            let mut chunk = vec![0; size + 2];
            self.stream.read_exact(&mut chunk).await?;
            anyhow::ensure!(chunk.ends_with(b"\r\n"), "a chunk not followed by CRLF");
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// What the server sends before it closes the connection, if it closes
    /// it within `limit`.
    pub async fn rest_until_close(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let mut rest = Vec::new();
        match tokio::time::timeout(limit, self.stream.read_to_end(&mut rest)).await {
            Ok(Ok(_)) => Some(rest),
            _ => None,
        }
    }
}
