//! A streaming handler for the streaming tests, steered by the query:
//!
//! - `events=N` (default 1): N events `event 0` .. `event N-1`;
//! - `sleep_ms=M`: then blocks M ms in a host call, then sends `done`
//!   (so the head is out before what follows);
//! - `flood_kb=K`: instead writes K KiB chunks forever, until the host
//!   stops it (client gone, response cap, deadline);
//! - `trap=before|after`: panics before the head, or after the events and
//!   the sleep;
//! - `bad_header`: starts with a header name that is not HTTP.

use muon_sdk::{BodyWriter, Request};

#[muon_sdk::streaming_handler]
#[expect(clippy::panic, reason = "the fixture panics on request")]
fn stream(req: Request, mut out: BodyWriter) {
    let number = |key: &str| req.query_param(key).and_then(|v| v.parse::<u64>().ok());
    let trap = req.query_param("trap");
    if trap.as_deref() == Some("before") {
        panic!("the fixture panicked before its response");
    }
    if req.query_param("bad_header").is_some() {
        out.start(200, &[("bad header", "x")]);
    }
    if let Some(kb) = number("flood_kb") {
        let chunk = vec![b'x'; usize::try_from(kb).unwrap_or(64) << 10];
        out.start(200, &[("content-type", "application/octet-stream")]);
        loop {
            out.write(&chunk);
        }
    }
    out.event_stream();
    for i in 0..number("events").unwrap_or(1) {
        out.event(&format!("event {i}"));
    }
    if let Some(ms) = number("sleep_ms") {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if trap.as_deref() == Some("after") {
        panic!("the fixture panicked after its events");
    }
    if number("sleep_ms").is_some() {
        out.event("done");
    }
}
