//! Returns a body of `?mb=N` MiB (default 32) after printing far more to
//! stdout than the host keeps.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn huge(req: Request) -> Response {
    let mb: usize = req.query_param("mb").and_then(|v| v.parse().ok()).unwrap_or(32);
    let line = "x".repeat(1023);
    for _ in 0..1024 {
        println!("{line}");
    }
    Response::bytes(vec![b'x'; mb << 20])
}
