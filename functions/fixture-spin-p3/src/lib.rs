//! A WASI 0.3 (`wasi:http@0.3.0`) service built with Spin SDK 7's
//! `#[http_service]`, as a Spin user writes one. Besides answering hello,
//! each path plays one of the sandbox tests' hostile guests, so the same
//! limits are checked against a component-model-async guest:
//!
//! - `/loop`: spins forever;
//! - `/sleep?ms=N`: waits in the async `wasi:clocks` `wait-for` (default: an hour);
//! - `/hog`: allocates until memory runs out;
//! - `/deep`: recurses without end;
//! - `/boom` panics (`/boom?calm` does not);
//! - `/huge?mb=N`: prints far more than the host keeps, then answers N MiB;
//! - `/canary`: `fresh` unless an earlier request's state survived;
//! - `/echo`: the request body back, with the method and path in headers;
//! - `/fetch?url=U`: `GET U` through `wasi:http/client`, answering
//!   `fetched <status>` or the error;
//! - `/stream?events=N&sleep_ms=M`: N server-sent events, then, if M is
//!   given, `done` after M ms; `/stream?flood_kb=K`: K KiB chunks without end. The body is
//!   written by a task of the guest's own after `handle` has returned;
//! - `/digits`: the tenant's `digits` model through `wasi:nn`, on a blank
//!   image, answering the ten probabilities.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::wasip3::http::types::{ErrorCode, Response};

/// What each path answers: a WASI response, or why none could be made.
type Answer = Result<Response, ErrorCode>;

/// `wasi:nn`, the same interface muon gives WASI 0.2 guests.
mod nn {
    spin_sdk::wit_bindgen::generate!({
        world: "wasi:nn/ml",
        path: "../../wit/deps/wasi-nn",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

static SEEN: AtomicBool = AtomicBool::new(false);
static SCRATCH: Mutex<[u8; 4096]> = Mutex::new([0; 4096]);

#[http_service]
async fn handle(request: Request) -> Answer {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    match path.as_str() {
        "/loop" => spin_forever(),
        "/sleep" => sleep(number(&query, "ms").unwrap_or(3_600_000)).await,
        "/hog" => hog(),
        "/deep" => format!("depth {}", deep(0)).into_response(),
        "/boom" if !query.contains("calm") => panic!("the fixture panicked on purpose"),
        "/boom" => "calm".into_response(),
        "/huge" => huge(number(&query, "mb").unwrap_or(32)),
        "/canary" => canary().into_response(),
        "/echo" => echo(request).await,
        "/digits" => digits(),
        "/stream" => stream(&query),
        "/fetch" => fetch(query.strip_prefix("url=").unwrap_or_default()).await,
        _ => "hello from a WASI 0.3 component\n".into_response(),
    }
}

fn number(query: &str, key: &str) -> Option<u64> {
    query.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn spin_forever() -> Answer {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

async fn sleep(ms: u64) -> Answer {
    spin_sdk::wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
    "woke up".into_response()
}

fn hog() -> Answer {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![1u8; 8 << 20]));
        if blocks.len() > 100_000 {
            return "unreachable: memory never ran out".into_response();
        }
    }
}

/// Recurses on the wasm call stack alone (no linear-memory frames), so the
/// host's wasm stack limit is what stops it.
#[expect(unconditional_recursion, reason = "the fixture exists to overflow the stack")]
fn deep(depth: u64) -> u64 {
    deep(std::hint::black_box(depth) + 1).wrapping_mul(3)
}

fn huge(mb: u64) -> Answer {
    let line = "x".repeat(1023);
    for _ in 0..1024 {
        println!("{line}");
    }
    let size = usize::try_from(mb).unwrap_or(usize::MAX) << 20;
    vec![b'x'; size].into_response()
}

fn canary() -> &'static str {
    let dirty = match SCRATCH.lock() {
        Ok(mut scratch) => {
            let dirty = scratch.iter().any(|&b| b != 0);
            scratch.fill(0xAA);
            dirty
        }
        Err(_) => true,
    };
    if SEEN.swap(true, Ordering::SeqCst) || dirty { "stale" } else { "fresh" }
}

async fn echo(request: Request) -> Answer {
    use spin_sdk::http::body::IncomingBodyExt;
    let mut headers = HeaderMap::new();
    for (name, value) in [("x-method", request.method().as_str()), ("x-path", request.uri().path())] {
        headers.insert(name, HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("?")));
    }
    match request.into_body().bytes().await {
        Ok(body) => (StatusCode::OK, headers, String::from_utf8_lossy(&body).into_owned()).into_response(),
        Err(err) => (StatusCode::BAD_REQUEST, format!("cannot read the body: {err:?}")).into_response(),
    }
}

async fn fetch(url: &str) -> Answer {
    let outgoing = match Request::get(url).body(spin_sdk::http::EmptyBody::new()) {
        Ok(outgoing) => outgoing,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("bad url: {err}")).into_response(),
    };
    match spin_sdk::http::send(outgoing).await {
        Ok(response) => format!("fetched {}", response.status().as_u16()).into_response(),
        Err(err) => format!("{err:?}").into_response(),
    }
}

fn digits() -> Answer {
    use nn::wasi::nn::{graph, tensor};
    let computed = graph::load_by_name("digits").and_then(|graph| {
        let context = graph.init_execution_context()?;
        let blank = tensor::Tensor::new(&[1, 64], tensor::TensorType::Fp32, &[0; 64 * 4]);
        context.compute(vec![("x".to_owned(), blank)])
    });
    match computed {
        Ok(outputs) => {
            let Some((_, probabilities)) = outputs.iter().find(|(name, _)| name == "probabilities") else {
                return (StatusCode::INTERNAL_SERVER_ERROR, "no output `probabilities`".to_owned()).into_response();
            };
            let values: Vec<String> = probabilities
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string())
                .collect();
            values.join(",").into_response()
        }
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("wasi-nn: {:?}", err.code())).into_response(),
    }
}

fn stream(query: &str) -> Answer {
    use spin_sdk::wasip3::http::types::Fields;
    use spin_sdk::wasip3::http_compat::BodyWriter;
    let (events, pause, flood) = (number(query, "events"), number(query, "sleep_ms"), number(query, "flood_kb"));
    let headers = Fields::from_list(&[("content-type".to_owned(), b"text/event-stream".to_vec())])
        .map_err(|err| ErrorCode::InternalError(Some(format!("{err:?}"))))?;
    let (mut writer, contents, trailers) = BodyWriter::new();
    let (response, _sent) = Response::new(headers, Some(contents), trailers);
    spin_sdk::wasip3::spawn(async move {
        if let Some(kb) = flood {
            let chunk = vec![b'x'; usize::try_from(kb).unwrap_or(1) << 10];
            // Ends when the host stops reading (the reader end is dropped).
            while writer.stream_writer.write_all(chunk.clone()).await.is_empty() {}
            return;
        }
        for event in 0..events.unwrap_or(0) {
            writer.stream_writer.write_all(format!("data: event {event}\n\n").into_bytes()).await;
        }
        if let Some(ms) = pause {
            spin_sdk::wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            writer.stream_writer.write_all(b"data: done\n\n".to_vec()).await;
        }
        drop(writer.stream_writer);
        writer.result_writer.write(Ok(None)).await.ok();
    });
    Ok(response)
}
