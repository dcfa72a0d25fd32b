//! Recurses without bound on the wasm call stack (no linear-memory frames),
//! so it hits the host's wasm stack limit: a `trap` naming a stack overflow.

use muon_sdk::{Request, Response};

#[expect(unconditional_recursion, reason = "the fixture exists to overflow the stack")]
fn descend(depth: u64) -> u64 {
    descend(std::hint::black_box(depth) + 1).wrapping_mul(3)
}

#[muon_sdk::handler]
fn recurse(_req: Request) -> Response {
    Response::text(format!("{}", descend(0)))
}
