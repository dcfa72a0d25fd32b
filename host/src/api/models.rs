//! `/v1/models`: a tenant's models, for wasi-nn's `load-by-name`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The inference backend that serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Backend {
    /// tract: pure Rust, always built in.
    #[serde(rename = "tract")]
    Tract,
    /// ONNX Runtime, loaded from `libonnxruntime` at run time.
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
}

impl Backend {
    /// The backend as it appears in JSON and query parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::OnnxRuntime => "onnxruntime",
        }
    }
}

/// Where a model's compute runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The CPU.
    Cpu,
    /// A GPU (ONNX Runtime with CUDA).
    Gpu,
}

impl Target {
    /// The target as it appears in JSON and query parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        }
    }
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    /// 16-bit IEEE float.
    Fp16,
    /// 32-bit IEEE float.
    Fp32,
    /// 64-bit IEEE float.
    Fp64,
    /// bfloat16.
    Bf16,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
}

impl ElementType {
    /// The type as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
            Self::Fp64 => "fp64",
            Self::Bf16 => "bf16",
            Self::U8 => "u8",
            Self::I32 => "i32",
            Self::I64 => "i64",
        }
    }
}

/// One dimension of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(u64),
    /// A size chosen per call (a batch dimension, typically), by its name.
    Symbol(String),
}

/// A named model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TensorSpec {
    /// The name the model gives it.
    pub name: String,
    /// Its element type.
    #[serde(rename = "type")]
    pub ty: ElementType,
    /// Its shape, outermost dimension first.
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape as `[N,64]`, as JSON writes it.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|dim| match dim {
                Dim::Fixed(size) => size.to_string(),
                Dim::Symbol(name) => format!("{name:?}"),
            })
            .collect();
        format!("[{}]", dims.join(","))
    }
}

/// A tenant's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// The name functions load it by.
    pub name: String,
    /// Counts up from 1 per name: each upload to the name is a new version,
    /// which replaces the one before.
    pub version: i64,
    /// SHA-256 of the model file, in hex.
    pub digest: String,
    /// Size of the model file, in bytes.
    pub size: u64,
    /// The backend that serves it.
    pub backend: Backend,
    /// Where its compute runs.
    pub target: Target,
    /// Its inputs, in graph order.
    pub inputs: Vec<TensorSpec>,
    /// Its outputs, in graph order.
    pub outputs: Vec<TensorSpec>,
    /// When it was uploaded, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The training job that made it (`GET /v1/jobs/{job}`), when a job exported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Dynamic batching, when the model was given `batch_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
}

/// A model's dynamic batching: its settings, and what this node batched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Batching {
    /// Most rows one batched compute takes (rows, not requests: a request of
    /// more rows is computed alone).
    pub batch_max: u32,
    /// How long the first request of a batch waits for others, in microseconds.
    pub batch_wait_us: u64,
    /// Whether the model can be batched: every input and output has a symbolic
    /// first dimension of the same name. Computes on a model that cannot are
    /// never merged.
    pub batchable: bool,
    /// Batches this node computed for this version since it first served it.
    pub batches: u64,
    /// Requests in those batches.
    pub requests: u64,
    /// Rows in those batches.
    pub rows: u64,
    /// The most rows one of them held (never more than `batch_max`).
    pub widest: u64,
    /// Their compute time, in microseconds: what their requests were billed, together.
    pub compute_us: u64,
}

/// `PUT /v1/models/{name}/batching`: how a model's concurrent computes are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most rows one batched compute takes, at most 65536; 0 turns batching off.
    pub batch_max: u32,
    /// How long the first request of a batch waits for others, in
    /// microseconds, at most 1000000 [default: 1000].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_wait_us: Option<u64>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// The tenant's models.
    pub models: Vec<Model>,
}

/// Query parameters of `PUT /v1/models/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// The file's format: `onnx` or `autodetect` [default: autodetect].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The backend [default: the server's `nn_backend`]; `ort` is accepted for `onnxruntime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
    /// Where to compute [default: cpu].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Merge concurrent computes into batches of at most this many rows
    /// (see `BatchSettings`) [default: 0, no batching].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_max: Option<u32>,
    /// How long a batch waits for more requests, in microseconds; with `batch_max` [default: 1000].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_wait_us: Option<u64>,
}
