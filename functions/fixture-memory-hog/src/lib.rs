//! Allocates 8 MiB blocks, touching each, until memory runs out.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn hog(_req: Request) -> Response {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let block = vec![1u8; 8 << 20];
        blocks.push(std::hint::black_box(block));
        if blocks.len() > 100_000 {
            return Response::text("unreachable: memory never ran out");
        }
    }
}
