//! Answers `fresh` the first time an instance handles a request and `stale`
//! after: with a fresh instance per request it must always say `fresh`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use muon_sdk::{Request, Response};

/// A global flag and a block of linear memory: either surviving from an
/// earlier request would show up as `stale`.
static SEEN: AtomicBool = AtomicBool::new(false);
static SCRATCH: Mutex<[u8; 4096]> = Mutex::new([0; 4096]);

#[muon_sdk::handler]
fn canary(_req: Request) -> Response {
    let dirty = match SCRATCH.lock() {
        Ok(mut scratch) => {
            let dirty = scratch.iter().any(|&b| b != 0);
            scratch.fill(0xAA);
            dirty
        }
        Err(_) => true,
    };
    if SEEN.swap(true, Ordering::SeqCst) || dirty { Response::text("stale") } else { Response::text("fresh") }
}
