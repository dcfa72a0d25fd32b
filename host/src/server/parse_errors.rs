//! JSON bodies for hyper's own answers to request heads it cannot parse.
//!
//! hyper answers a malformed head (`400`), or one with too many or too large
//! headers or a Content-Length of 2^64-1 (`431`), itself, before any service
//! sees a request, with an empty body; hyper 1.x writes that answer in its
//! connection state machine (`proto/h1/conn.rs`, `Conn::on_parse_error`) and
//! offers no hook to change it. [`JsonParseErrors`] wraps the connection and
//! gives those answers muon's JSON error body on their way out.
//!
//! It knows them by how they start: the status line, then `connection: close`
//! and `content-length: 0` as the first headers. No answer of muon's starts
//! so: muon's own carry `content-type` or `x-muon-request-id` first, and a
//! guest cannot set `connection` (the host owns framing). An answer that does
//! not start a write (one queued behind another response's bytes) keeps its
//! empty body.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::api::{ErrorBody, ErrorCode};

/// hyper's answers, as they start on the wire, and what muon says instead.
const ANSWERS: [(&[u8], ErrorCode, &str); 2] = [
    (
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n",
        ErrorCode::BadRequest,
        "the request's head is not valid HTTP/1.1: check the request line, the header syntax and Content-Length",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n",
        ErrorCode::HeadersTooLarge,
        "the request's headers are too many or too large (the server's `max_headers` and `max_header_bytes`), \
         or its Content-Length is beyond any limit; send fewer or smaller headers",
    ),
];

const EMPTY_LENGTH: &[u8] = b"content-length: 0\r\n";

/// A connection whose writes of hyper's parse-error answers get a JSON body.
pub struct JsonParseErrors<T> {
    inner: T,
    pending: Option<Rewritten>,
}

/// A rewritten answer being written in place of the head hyper handed over.
struct Rewritten {
    bytes: Vec<u8>,
    written: usize,
    /// How many of hyper's bytes it replaces: reported once all is written.
    replaces: usize,
}

impl<T> JsonParseErrors<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while pending.written < pending.bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &pending.bytes[pending.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.written += n;
        }
        let replaces = pending.replaces;
        self.pending = None;
        Poll::Ready(Ok(replaces))
    }
}

/// The answer to write instead of `head`, when `head` starts with one of
/// hyper's parse-error answers and holds all of its head.
fn rewrite(head: &[u8]) -> Option<Rewritten> {
    let (start, code, message) = ANSWERS.iter().find(|(start, ..)| head.starts_with(start))?;
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body = serde_json::to_vec(&ErrorBody::new(*code, *message)).ok()?;
    let mut bytes = Vec::with_capacity(end + body.len() + 64);
    bytes.extend_from_slice(&start[..start.len() - EMPTY_LENGTH.len()]);
    bytes.extend_from_slice(b"content-type: application/json\r\n");
    bytes.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    bytes.extend_from_slice(&head[start.len()..end]);
    bytes.extend_from_slice(&body);
    Some(Rewritten { bytes, written: 0, replaces: end })
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match rewrite(buf) {
                Some(rewritten) => this.pending = Some(rewritten),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        this.poll_rewritten(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            // hyper queues a head as a buffer of its own, first in line.
            match bufs.iter().find(|buf| !buf.is_empty()).and_then(|head| rewrite(head)) {
                Some(rewritten) => this.pending = Some(rewritten),
                None => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            }
        }
        this.poll_rewritten(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_431_gets_a_json_body_and_its_length() -> anyhow::Result<()> {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 09:21:48 GMT\r\n\r\n";
        let rewritten = rewrite(head).ok_or_else(|| anyhow::anyhow!("not rewritten"))?;
        assert_eq!(rewritten.replaces, head.len());
        let text = String::from_utf8(rewritten.bytes)?;
        let (top, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no head"))?;
        assert!(top.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"));
        assert!(top.contains(&format!("content-length: {}", body.len())), "{top}");
        assert!(top.ends_with("date: Thu, 03 Dec 2026 09:21:48 GMT"), "{top}");
        assert!(body.contains("\"code\":\"headers_too_large\""), "{body}");
        Ok(())
    }

    #[test]
    fn muons_own_answers_pass_untouched() {
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-muon-request-id: 1\r\ncontent-length: 0\r\n\r\n";
        assert!(rewrite(own).is_none());
        let incomplete = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Th";
        assert!(rewrite(incomplete).is_none());
    }
}
