//! Write muon functions in a few lines.
//!
//! One attribute turns a Rust function into a component for one of muon's
//! function kinds. Build it with `cargo build --target wasm32-wasip2` and
//! deploy the `.wasm` with `muon deploy NAME FILE`.
//!
//! ```ignore
//! use muon_sdk::{Request, Response};
//!
//! #[muon_sdk::handler]
//! fn hello(req: Request) -> Response {
//!     let who = req.query_param("name").unwrap_or_else(|| "world".to_owned());
//!     Response::text(format!("hello, {who}\n"))
//! }
//! ```
//!
//! - [`handler`]: `fn(Request) -> impl IntoResponse`, an HTTP endpoint;
//! - [`streaming_handler`]: `fn(Request, BodyWriter)`, an HTTP endpoint that
//!   sends its body as it goes (tokens, progress, [`sse`] events);
//! - [`preprocessor`]: `fn(RawRecord) -> Result<Vec<NamedTensor>, E>`;
//! - [`training_step`]: on `impl TrainingStep for T`; its arithmetic may run
//!   on the host's inference backend as an ONNX train-step graph, with
//!   [`nn::Model::train_step`], [`nn::Model::train_steps`] (several batches
//!   in one call, as jobs pass them) and [`nn::Model::evaluate`].
//!
//! Any of them can run models through the standard `wasi:nn` interface with
//! [`nn::Model`]:
//!
//! ```no_run
//! use muon_sdk::nn::{ErrorCode, Model, NnError};
//! use muon_sdk::{Request, Response, Tensor};
//!
//! #[muon_sdk::handler]
//! fn classify(req: Request) -> Response {
//!     let Ok(pixels) = req.json::<Vec<f32>>() else {
//!         return Response::error(400, "bad_request", "send a JSON array of 64 numbers");
//!     };
//!     match probabilities(&pixels) {
//!         Ok(probabilities) => Response::json(&probabilities),
//!         Err(err) if err.code == ErrorCode::Timeout => Response::error(504, err.code.as_str(), err),
//!         Err(err) => Response::error(422, err.code.as_str(), err),
//!     }
//! }
//!
//! fn probabilities(pixels: &[f32]) -> Result<Vec<f32>, NnError> {
//!     let model = Model::load("digits")?; // uploaded with PUT /v1/models/digits
//!     let outputs = model.run(&[("x", Tensor::from_f32([1, 64], pixels))])?;
//!     Ok(outputs.get("probabilities").and_then(|t| t.to_f32().ok()).unwrap_or_default())
//! }
//! ```

// Functions are written against these docs alone.
#![deny(missing_docs)]

mod http;
pub mod nn;
pub mod sse;
mod stream;
mod tensor;
mod training;

pub use http::{IntoResponse, Json};
pub use muon_sdk_macro::{handler, preprocessor, streaming_handler, training_step};
pub use stream::BodyWriter;
pub use tensor::TensorError;
pub use training::{HyperParameters, TrainingStep};

pub use __bindings::handler::muon::function::types::{NamedTensor, Request, Response, Tensor, TensorType};
pub use __bindings::preprocessor::exports::muon::function::preprocess::RawRecord;
pub use __bindings::training::exports::muon::function::train::{Evaluation, StepOutput, StepsOutput};

/// Generated bindings of muon's worlds; used by the macros, not by hand.
#[doc(hidden)]
pub mod __bindings {
    /// The `handler` world, which also defines the shared `types`.
    pub mod handler {
        wit_bindgen::generate!({
            world: "muon:function/handler",
            path: "../wit/muon-function",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::muon_sdk::__bindings::handler",
        });
    }

    /// The `streaming-handler` world.
    pub mod streaming {
        wit_bindgen::generate!({
            world: "muon:function/streaming-handler",
            path: "../wit/muon-function",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::muon_sdk::__bindings::streaming",
            with: { "muon:function/types@0.1.0": crate::__bindings::handler::muon::function::types },
        });
    }

    /// The `preprocessor` world.
    pub mod preprocessor {
        wit_bindgen::generate!({
            world: "muon:function/preprocessor",
            path: "../wit/muon-function",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::muon_sdk::__bindings::preprocessor",
            with: { "muon:function/types@0.1.0": crate::__bindings::handler::muon::function::types },
        });
    }

    /// The `wasi:nn/ml` world: imports only, wrapped by [`crate::nn`].
    pub mod nn {
        wit_bindgen::generate!({
            world: "wasi:nn/ml",
            path: "../wit/deps/wasi-nn",
        });
    }

    /// The `training-step` world.
    pub mod training {
        wit_bindgen::generate!({
            world: "muon:function/training-step",
            path: "../wit/muon-function",
            pub_export_macro: true,
            export_macro_name: "export",
            default_bindings_module: "::muon_sdk::__bindings::training",
            with: { "muon:function/types@0.1.0": crate::__bindings::handler::muon::function::types },
        });
    }
}

/// Support code for the macros.
#[doc(hidden)]
pub mod __private {
    /// A function's `Result` with any displayable error, as the WIT `result<_, string>`.
    pub fn guest_result<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, String> {
        result.map_err(|err| err.to_string())
    }
}
