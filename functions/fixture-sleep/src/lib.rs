//! Blocks inside a host call (a sleep of `?ms=N`, default 60 s): epochs
//! cannot interrupt it, the async deadline must. Short sleeps make a slow but
//! successful function for concurrency tests.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn nap(req: Request) -> Response {
    let ms: u64 = req.query_param("ms").and_then(|v| v.parse().ok()).unwrap_or(60_000);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Response::text("woke up")
}
