//! A standard `wasi:http/proxy` component: no muon SDK, runs unmodified on
//! `wasmtime serve` and Spin too. Answers with the method and path it saw.

use std::io::Write as _;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasip2::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let method = format!("{:?}", request.method());
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(mut out) = body.write() {
            let _ = writeln!(out, "hello from wasi:http, {method} {path}");
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
