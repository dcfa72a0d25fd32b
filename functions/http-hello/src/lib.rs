//! A standard `wasi:http/proxy` component: no muon SDK, runs unmodified on
//! `wasmtime serve` and Spin too. Answers with the method and path it saw;
//! `/fetch?url=http://host:port/path` makes an outbound request instead and
//! reports what came back (outbound HTTP is denied unless the deploy allows
//! the host); `/hoard?n=N` holds N host resources at once.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasip2::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let text = if let Some(url) = path.strip_prefix("/fetch?url=") {
            fetch(url)
        } else if let Some(count) = path.strip_prefix("/hoard?n=") {
            hoard(count.parse().unwrap_or(0))
        } else {
            format!("hello from wasi:http, {:?} {path}", request.method())
        };
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(mut out) = body.write() {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

/// GETs `http://authority/path` and says what happened.
fn fetch(url: &str) -> String {
    let Some(rest) = url.strip_prefix("http://") else { return "error: only http:// URLs".to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&path));
    match outgoing_handler::handle(request, None) {
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("fetched {}", response.status()),
                Some(Ok(Err(code))) => format!("error {code:?}"),
                other => format!("error {other:?}"),
            }
        }
        Err(code) => format!("error {code:?}"),
    }
}

/// Creates `count` host resources and keeps them all: past the host's
/// per-instance resource cap this must fail cleanly.
fn hoard(count: usize) -> String {
    let kept: Vec<Fields> = (0..count).map(|_| Fields::new()).collect();
    format!("holding {} fields", kept.len())
}
