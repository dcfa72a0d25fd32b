//! Blocks inside a host call (a 60 s sleep): epochs cannot interrupt it, the
//! async deadline must.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn nap(_req: Request) -> Response {
    std::thread::sleep(std::time::Duration::from_secs(60));
    Response::text("woke up")
}
