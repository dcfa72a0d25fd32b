//! Recurses without bound: a stack-overflow trap, never a host crash.

use muon_sdk::{Request, Response};

#[expect(unconditional_recursion, reason = "the fixture exists to overflow the stack")]
fn descend(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    descend(depth + 1).wrapping_add(frame[(depth % 32) as usize])
}

#[muon_sdk::handler]
fn recurse(_req: Request) -> Response {
    Response::text(format!("{}", descend(0)))
}
