//! The `muon:function/handler` world: a request record in, a response record out.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::InvokeError;
use super::framing;
use crate::engine::{Request, Response};

/// The request record a handler function sees: `path` is the part of the URL
/// below the function's route.
pub fn request(parts: &http::request::Parts, path: &str, body: Bytes) -> Request {
    Request {
        method: parts.method.as_str().to_owned(),
        path: path.to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: body.into(),
    }
}

/// The guest's response as the host sends it: framing and hop-by-hop headers
/// are dropped (hyper frames the body), and a status or header that is not
/// valid HTTP is a `500` naming it rather than something put on the wire.
pub(super) fn framed(response: Response, limit: u64, function: &str) -> Result<http::Response<Bytes>, InvokeError> {
    if response.body.len() as u64 > limit {
        return Err(InvokeError::ResponseTooLarge { limit });
    }
    let body = Bytes::from(response.body);
    Ok(head(response.status, response.headers, function)?.map(|()| body))
}

/// A response head from a guest's status and headers, checked and with the
/// host-owned headers dropped.
pub(super) fn head(
    status: u16,
    headers: Vec<(String, String)>,
    function: &str,
) -> Result<http::Response<()>, InvokeError> {
    let status = framing::final_status(status)?;
    let mut out = http::Response::new(());
    *out.status_mut() = status;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            InvokeError::InvalidResponse(format!("`{}` is not a valid header name", name.escape_debug()))
        })?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            InvokeError::InvalidResponse(format!("the value of header `{name}` is not a valid header value"))
        })?;
        if framing::host_owned(&name) {
            framing::log_dropped(function, &name);
            continue;
        }
        out.headers_mut().append(name, value);
    }
    Ok(out)
}
