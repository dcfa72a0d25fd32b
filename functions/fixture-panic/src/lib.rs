//! Panics: a `trap` response carrying the panic message.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
#[expect(clippy::panic, reason = "the fixture exists to panic")]
fn boom(req: Request) -> Response {
    if req.query_param("calm").is_some() {
        return Response::text("calm");
    }
    panic!("the fixture panicked on purpose");
}
