//! The `wasi:http` twin of `fixture-forge`: answers with the status, headers
//! and body named in the request's JSON body,
//! `{"status": 200, "headers": [["name", "value"]], "body": "text"}`.
//! Headers that `wasi:http` itself refuses are skipped, so the test sees what
//! the host does with the rest.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(ForgeHttp);

struct ForgeHttp;

#[derive(serde::Deserialize)]
struct Forged {
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

impl wasip2::exports::http::incoming_handler::Guest for ForgeHttp {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let forged = read_body(&request)
            .and_then(|bytes| serde_json::from_slice::<Forged>(&bytes).ok())
            .unwrap_or(Forged { status: 400, headers: Vec::new(), body: "send a JSON body".to_owned() });
        let headers = Fields::new();
        for (name, value) in &forged.headers {
            let _ = headers.append(name, value.as_bytes());
        }
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(forged.status);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        if let Ok(mut out) = body.write() {
            let _ = out.write_all(forged.body.as_bytes());
            let _ = out.flush();
        }
        let _ = OutgoingBody::finish(body, None);
    }
}

fn read_body(request: &IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().ok()?;
        stream.read_to_end(&mut bytes).ok()?;
    }
    Some(bytes)
}
