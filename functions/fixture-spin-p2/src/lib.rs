//! A WASI 0.2 (`wasi:http@0.2.0`) component built with Spin SDK 3's
//! `#[http_component]`, as a Spin user wrote one before WASI 0.3: `/echo`
//! answers the request body with the method and path in headers; any other
//! path answers hello.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> impl IntoResponse {
    if request.path() == "/echo" {
        return Response::builder()
            .status(200)
            .header("x-method", request.method().to_string())
            .header("x-path", request.path())
            .body(request.body().to_vec())
            .build();
    }
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello from a WASI 0.2 component\n")
        .build()
}
