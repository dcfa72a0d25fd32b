//! A standard `wasi:http/proxy` component that runs a model through the
//! standard `wasi:nn` interface, with its own bindings and no muon SDK: the
//! same component runs on `wasmtime serve -S nn`, which shows that muon runs
//! unmodified wasi-nn guests.
//!
//! `POST {"pixels": [64 numbers]}` answers `{"digit": d, "probabilities": [10]}`
//! from the model named `digits` (input `x` fp32 [1, 64], output
//! `probabilities` fp32 [1, 10]). Errors are `{"error": {"code", "message"}}`:
//! 400 for a bad body, 422 (504 for a timeout) for a wasi-nn error, whose
//! code is the wasi-nn error code.

use std::io::{Read as _, Write as _};

use serde::Deserialize;
use serde_json::{Value, json};
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

use nn::wasi::nn::errors::{Error as NnError, ErrorCode};
use nn::wasi::nn::graph;
use nn::wasi::nn::tensor::{Tensor, TensorType};

/// wasi-nn bindings, generated from the vendored standard WIT.
mod nn {
    wit_bindgen::generate!({ world: "wasi:nn/ml", path: "../../wit/deps/wasi-nn" });
}

wasip2::http::proxy::export!(NnDigits);

struct NnDigits;

impl wasip2::exports::http::incoming_handler::Guest for NnDigits {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, body) = match answer(request) {
            Ok(body) => (200, body),
            Err(failure) => (failure.status, json!({ "error": { "code": failure.code, "message": failure.message } })),
        };
        respond(response_out, status, &body);
    }
}

/// Why a request failed: the status and the body's error code and message.
struct Failure {
    status: u16,
    code: &'static str,
    message: String,
}

impl Failure {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: 400, code: "bad_request", message: message.into() }
    }
}

impl From<NnError> for Failure {
    fn from(error: NnError) -> Self {
        let code = error.code();
        Self {
            status: if code == ErrorCode::Timeout { 504 } else { 422 },
            code: code_name(code),
            message: error.data(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    pixels: Vec<f32>,
}

fn answer(request: IncomingRequest) -> Result<Value, Failure> {
    let input: Input = serde_json::from_slice(&read_body(request)?)
        .map_err(|err| Failure::bad_request(format!("expected {{\"pixels\": [64 numbers]}}: {err}")))?;
    if input.pixels.len() != 64 {
        return Err(Failure::bad_request(format!("expected 64 pixels, got {}", input.pixels.len())));
    }
    let probabilities = classify(&input.pixels)?;
    // The first of equal maxima, as numpy's argmax (`max_by` keeps the last).
    let digit = probabilities.iter().enumerate().rev().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    Ok(json!({ "digit": digit, "probabilities": probabilities }))
}

/// One run of the `digits` model, the wasi-nn way: graph, context, compute.
fn classify(pixels: &[f32]) -> Result<Vec<f32>, Failure> {
    let graph = graph::load_by_name("digits")?;
    let context = graph.init_execution_context()?;
    let data: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    let outputs = context.compute(vec![("x".to_owned(), Tensor::new(&[1, 64], TensorType::Fp32, &data))])?;
    let unexpected = || Failure {
        status: 422,
        code: "unexpected_output",
        message: "the model has no fp32 output `probabilities` of 10 elements".to_owned(),
    };
    let (_, probabilities) = outputs.into_iter().find(|(name, _)| name == "probabilities").ok_or_else(unexpected)?;
    let bytes = probabilities.data();
    if probabilities.ty() != TensorType::Fp32 || bytes.len() != 40 {
        return Err(unexpected());
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, Failure> {
    let unreadable = |_| Failure::bad_request("cannot read the request body");
    let body = request.consume().map_err(unreadable)?;
    let mut stream = body.stream().map_err(unreadable)?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).map_err(|err| Failure::bad_request(format!("cannot read the body: {err}")))?;
    Ok(bytes)
}

fn respond(response_out: ResponseOutparam, status: u16, body: &Value) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"application/json".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else { return };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body.to_string().as_bytes());
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// The WIT name of a wasi-nn error code.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument => "invalid-argument",
        ErrorCode::InvalidEncoding => "invalid-encoding",
        ErrorCode::Timeout => "timeout",
        ErrorCode::RuntimeError => "runtime-error",
        ErrorCode::UnsupportedOperation => "unsupported-operation",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::NotFound => "not-found",
        ErrorCode::Security => "security",
        ErrorCode::Unknown => "unknown",
    }
}
