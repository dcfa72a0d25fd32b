//! Spins forever: the deadline must stop it.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn spin(_req: Request) -> Response {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}
