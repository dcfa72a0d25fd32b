//! Host bindings for muon's own worlds (`wit/muon-function`).

/// The `handler` world; its `types` interface is shared by the other worlds.
pub mod handler {
    wasmtime::component::bindgen!({
        world: "muon:function/handler",
        path: "../wit/muon-function",
        exports: { default: async },
    });
}

/// The `preprocessor` world.
pub mod preprocessor {
    wasmtime::component::bindgen!({
        world: "muon:function/preprocessor",
        path: "../wit/muon-function",
        exports: { default: async },
        with: { "muon:function/types": crate::engine::bindings::handler::muon::function::types },
    });
}

/// The `training-step` world.
pub mod training {
    wasmtime::component::bindgen!({
        world: "muon:function/training-step",
        path: "../wit/muon-function",
        exports: { default: async },
        with: { "muon:function/types": crate::engine::bindings::handler::muon::function::types },
    });
}

pub use handler::muon::function::types::{NamedTensor, Request, Response, Tensor, TensorType};
pub use preprocessor::exports::muon::function::preprocess::RawRecord;
