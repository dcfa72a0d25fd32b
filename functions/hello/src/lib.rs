//! The first function to deploy: `curl localhost:8080/fn/default/hello?name=you`.

use muon_sdk::{Request, Response};

#[muon_sdk::handler]
fn hello(req: Request) -> Response {
    let name = req.query_param("name").unwrap_or_else(|| "world".to_owned());
    Response::text(format!("hello, {name}!\n"))
}
