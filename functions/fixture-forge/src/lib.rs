//! Answers with the status, headers and body named in the request's JSON body,
//! `{"status": 200, "headers": [["name", "value"]], "body": "text"}`: a guest
//! that tries to forge the framing of the host's responses.

use muon_sdk::{Request, Response};

#[derive(serde::Deserialize)]
struct Forged {
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

#[muon_sdk::handler]
fn forge(req: Request) -> Response {
    match req.json::<Forged>() {
        Ok(forged) => Response { status: forged.status, headers: forged.headers, body: forged.body.into_bytes() },
        Err(err) => Response::error(400, "bad_request", err),
    }
}
