//! The `muon:function/handler` world: a request record in, a response record out.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::{GuestCall, framing, record_instantiate};
use crate::engine::{EntryPoint, Request, Response};
use crate::error::ApiError;
use crate::metering::Measurement;
use crate::registry::Version;
use crate::server::App;
use crate::server::body::{self, Body};

/// Calls a handler function with an HTTP request whose body is already read.
pub async fn call_handler(
    app: &App,
    version: Arc<Version>,
    parts: &http::request::Parts,
    path: &str,
    body: Bytes,
    request_id: &str,
    usage: &mut Measurement,
) -> Result<http::Response<Body>, ApiError> {
    let EntryPoint::Handler(pre) = &version.entry else {
        return Err(ApiError::Internal(anyhow::anyhow!("call_handler on a non-handler function")));
    };
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: path.to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: body.into(),
    };
    let _slot = Arc::clone(&version.admission).enter().await?;
    let mut call = GuestCall::new(app, Arc::clone(&version), request_id);
    let outcome = call
        .guard()
        .run(async {
            let started = Instant::now();
            let instance = pre.instantiate_async(&mut call.store).await?;
            record_instantiate(started);
            instance.muon_function_handle().call_handle(&mut call.store, &request).await
        })
        .await;
    let response = call.finish(outcome, usage)?;
    into_http_response(response, app.config.limits.max_response_bytes, &version.label)
}

/// The guest's response as the host sends it: framing and hop-by-hop headers
/// are dropped (hyper frames the body), and a status or header that is not
/// valid HTTP is a `500` naming it rather than something put on the wire.
fn into_http_response(response: Response, limit: u64, function: &str) -> Result<http::Response<Body>, ApiError> {
    if response.body.len() as u64 > limit {
        return Err(ApiError::ResponseTooLarge { limit });
    }
    let status = framing::final_status(response.status)?;
    let mut out = http::Response::new(body::full(response.body));
    *out.status_mut() = status;
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::InvalidResponse(format!("`{}` is not a valid header name", name.escape_debug())))?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            ApiError::InvalidResponse(format!("the value of header `{name}` is not a valid header value"))
        })?;
        if framing::host_owned(&name) {
            framing::log_dropped(function, &name);
            continue;
        }
        out.headers_mut().append(name, value);
    }
    Ok(out)
}
