//! The host owns the framing of every response.
//!
//! A guest's headers are copied onto the wire next to the body hyper frames,
//! so a guest that set `content-length: 0` and returned a whole HTTP response
//! as its body would have the host send that response as the answer to the
//! next request on the connection, which may be another tenant's. The host
//! therefore drops every header that frames the message or concerns the hop
//! (hyper writes the right ones from the body) and muon's own `x-muon-*`
//! headers, and refuses statuses a final response cannot have.

use http::{HeaderMap, HeaderName, StatusCode};

use super::InvokeError;

/// Whether response header `name` belongs to the host, not the guest.
pub(crate) fn host_owned(name: &HeaderName) -> bool {
    // `HeaderName::as_str` is lower case, so one comparison per name.
    match name.as_str() {
        "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "upgrade" | "te" | "trailer" => true,
        other => other.starts_with("proxy-") || other.starts_with("x-muon-"),
    }
}

/// The guest's status, if a final response may carry it: a `1xx` would make
/// the client wait for another response, and anything past 599 is not HTTP.
pub(crate) fn final_status(status: u16) -> Result<StatusCode, InvokeError> {
    match StatusCode::from_u16(status) {
        Ok(code) if (200..=599).contains(&status) => Ok(code),
        _ => Err(InvokeError::InvalidResponse(format!("status {status} is not a final HTTP status; use 200 to 599"))),
    }
}

/// Drops the host-owned headers of a response the guest built whole (the
/// `wasi:http` path). Costs one pass over the names when there are none.
pub(crate) fn drop_host_owned(headers: &mut HeaderMap, function: &str) {
    if !headers.keys().any(host_owned) {
        return;
    }
    let owned: Vec<HeaderName> = headers.keys().filter(|name| host_owned(name)).cloned().collect();
    for name in owned {
        log_dropped(function, &name);
        headers.remove(&name);
    }
}

/// Logs a header the host dropped from a guest's response.
pub(crate) fn log_dropped(function: &str, name: &HeaderName) {
    tracing::debug!(function, header = %name, "dropped a response header the host owns");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_hop_by_hop_and_muon_headers_belong_to_the_host() {
        for name in [
            "content-length",
            "Transfer-Encoding",
            "connection",
            "keep-alive",
            "upgrade",
            "te",
            "trailer",
            "proxy-authenticate",
            "proxy-connection",
            "x-muon-request-id",
            "X-Muon-Anything",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes());
            assert!(name.is_ok_and(|name| host_owned(&name)));
        }
        for name in ["content-type", "cache-control", "x-request-id", "set-cookie", "tea"] {
            assert!(HeaderName::from_bytes(name.as_bytes()).is_ok_and(|name| !host_owned(&name)));
        }
    }

    #[test]
    fn only_final_statuses_pass() {
        assert!(final_status(200).is_ok() && final_status(599).is_ok() && final_status(204).is_ok());
        for status in [0, 100, 101, 103, 199, 600, 999, 1000] {
            assert!(matches!(final_status(status), Err(InvokeError::InvalidResponse(_))), "{status}");
        }
    }

    #[test]
    fn dropping_keeps_the_guests_own_headers() {
        let mut headers = HeaderMap::new();
        headers.append("content-length", http::HeaderValue::from_static("0"));
        headers.append("content-length", http::HeaderValue::from_static("7"));
        headers.append("content-type", http::HeaderValue::from_static("text/plain"));
        headers.append("x-muon-request-id", http::HeaderValue::from_static("forged"));
        drop_host_owned(&mut headers, "t/f");
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("content-type"));
    }
}
