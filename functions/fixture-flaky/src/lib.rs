//! Traps on `?fail_percent=N` percent of its calls (default 30), at random:
//! the bad version of a guarded rollout, or, at 1%, a healthy function with
//! a steady trickle of failures.

use std::hash::{BuildHasher, RandomState};

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn flaky(req: Request) -> Response {
    let fail_percent: u64 = req.query_param("fail_percent").and_then(|v| v.parse().ok()).unwrap_or(30);
    // A fresh instance seeds a fresh `RandomState` from wasi:random.
    let draw = RandomState::new().hash_one(0u8) % 100;
    if draw < fail_percent {
        std::process::abort();
    }
    Response::text("ok\n")
}
