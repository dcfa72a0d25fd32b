//! Test fixture: loads a model and computes on it as a JSON probe describes,
//! so integration tests can hand the host's wasi-nn any input, good or bad.
//!
//! ```text
//! {"model": "digits"}                                   load-by-name, or
//! {"model_base64": "...", "encoding": "onnx", "target": "cpu"}   load (defaults onnx, cpu)
//! "inputs": [{"name": "x", "type": "fp32", "dims": [1, 64],
//!             "data_base64": "..." | "fill_bytes": 256 | "fill_f32": 1.0}]
//! "repeat": 1                                           computes on the one loaded model
//! "pause_ms": 0                                         sleeps between the load and the first compute
//! ```
//!
//! It always answers 200: `{"ok": true, "outputs": [{"name", "type", "dims",
//! "data_base64"}]}` (the last compute's) or `{"ok": false, "stage": "load" |
//! "compute", "code": "<wasi-nn error code>", "message"}`. A malformed probe
//! is a 400. `fill_f32` repeats the value product(dims) times, counted with
//! checked arithmetic; a fill the guest cannot allocate is a 400, not a trap.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use muon_sdk::nn::{Encoding, Model, NnError, Outputs, Target};
use muon_sdk::{NamedTensor, Request, Response, Tensor, TensorType};
use serde::Deserialize;
use serde_json::{Value, json};

const TYPES: [(&str, TensorType); 7] = [
    ("fp16", TensorType::Fp16),
    ("fp32", TensorType::Fp32),
    ("fp64", TensorType::Fp64),
    ("bf16", TensorType::Bf16),
    ("u8", TensorType::U8),
    ("i32", TensorType::I32),
    ("i64", TensorType::I64),
];
const ENCODINGS: [(&str, Encoding); 7] = [
    ("openvino", Encoding::Openvino),
    ("onnx", Encoding::Onnx),
    ("tensorflow", Encoding::Tensorflow),
    ("pytorch", Encoding::Pytorch),
    ("tensorflowlite", Encoding::Tensorflowlite),
    ("ggml", Encoding::Ggml),
    ("autodetect", Encoding::Autodetect),
];
const TARGETS: [(&str, Target); 3] = [("cpu", Target::Cpu), ("gpu", Target::Gpu), ("tpu", Target::Tpu)];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    model: Option<String>,
    model_base64: Option<String>,
    encoding: Option<String>,
    target: Option<String>,
    #[serde(default)]
    inputs: Vec<Input>,
    repeat: Option<u32>,
    pause_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    dims: Vec<u32>,
    data_base64: Option<String>,
    fill_bytes: Option<usize>,
    fill_f32: Option<f32>,
}

#[muon_sdk::handler]
fn probe(req: Request) -> Response {
    match run(&req) {
        Ok(answer) => Response::json(&answer),
        Err(message) => Response::error(400, "bad_request", message),
    }
}

/// The probe's outcome, or why the probe itself is malformed.
fn run(req: &Request) -> Result<Value, String> {
    let probe: Probe = req.json().map_err(|e| format!("bad probe: {e}"))?;
    let inputs = probe.inputs.iter().map(|i| Ok((i.name.as_str(), tensor(i)?))).collect::<Result<Vec<_>, String>>()?;
    let repeat = probe.repeat.unwrap_or(1);
    if repeat == 0 {
        return Err("repeat must be at least 1".to_owned());
    }
    let model = match load(&probe)? {
        Ok(model) => model,
        Err(err) => return Ok(failure("load", &err)),
    };
    // Holding the model without computing keeps a batching window open.
    std::thread::sleep(std::time::Duration::from_millis(probe.pause_ms.unwrap_or(0)));
    let mut outputs = Outputs::default();
    for _ in 0..repeat {
        outputs = match model.run(&inputs) {
            Ok(outputs) => outputs,
            Err(err) => return Ok(failure("compute", &err)),
        };
    }
    Ok(json!({ "ok": true, "outputs": outputs.iter().map(describe).collect::<Vec<_>>() }))
}

fn load(probe: &Probe) -> Result<Result<Model, NnError>, String> {
    match (&probe.model, &probe.model_base64) {
        (Some(_), None) if probe.encoding.is_some() || probe.target.is_some() => {
            Err("`encoding` and `target` go with `model_base64`, not `model`".to_owned())
        }
        (Some(name), None) => Ok(Model::load(name)),
        (None, Some(encoded)) => {
            let bytes = STANDARD.decode(encoded).map_err(|e| format!("model_base64: {e}"))?;
            let encoding = lookup(&ENCODINGS, probe.encoding.as_deref().unwrap_or("onnx"), "encoding")?;
            let target = lookup(&TARGETS, probe.target.as_deref().unwrap_or("cpu"), "target")?;
            Ok(Model::from_bytes(&bytes, encoding, target))
        }
        _ => Err("give exactly one of `model` and `model_base64`".to_owned()),
    }
}

fn tensor(input: &Input) -> Result<Tensor, String> {
    let ty = lookup(&TYPES, &input.ty, "type")?;
    let data = match (&input.data_base64, input.fill_bytes, input.fill_f32) {
        (Some(encoded), None, None) => {
            STANDARD.decode(encoded).map_err(|e| format!("{}: data_base64: {e}", input.name))?
        }
        (None, Some(bytes), None) => {
            let mut data = allocate(bytes)?;
            data.resize(bytes, 0);
            data
        }
        (None, None, Some(value)) => {
            let count = input.dims.iter().try_fold(1usize, |count, &dim| count.checked_mul(usize::try_from(dim).ok()?));
            let bytes = count.and_then(|count| count.checked_mul(4));
            let (Some(count), Some(bytes)) = (count, bytes) else {
                return Err(format!(
                    "{}: fill_f32: the dimensions hold more bytes than the guest can address",
                    input.name
                ));
            };
            let mut data = allocate(bytes)?;
            for _ in 0..count {
                data.extend_from_slice(&value.to_le_bytes());
            }
            data
        }
        _ => return Err(format!("{}: give exactly one of data_base64, fill_bytes and fill_f32", input.name)),
    };
    Ok(Tensor { dimensions: input.dims.clone(), ty, data })
}

/// An empty buffer with room for `bytes`, or an error where a plain
/// allocation would abort the guest.
fn allocate(bytes: usize) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    data.try_reserve_exact(bytes).map_err(|_| format!("the guest cannot allocate {bytes} bytes"))?;
    Ok(data)
}

fn describe(output: &NamedTensor) -> Value {
    let ty = TYPES.iter().find(|(_, ty)| *ty == output.tensor.ty).map_or("?", |(name, _)| name);
    json!({
        "name": output.name,
        "type": ty,
        "dims": output.tensor.dimensions,
        "data_base64": STANDARD.encode(&output.tensor.data),
    })
}

fn failure(stage: &str, error: &NnError) -> Value {
    json!({ "ok": false, "stage": stage, "code": error.code.as_str(), "message": error.message })
}

fn lookup<T: Copy>(table: &[(&str, T)], name: &str, what: &str) -> Result<T, String> {
    table.iter().find(|(known, _)| *known == name).map(|(_, value)| *value).ok_or_else(|| {
        let known: Vec<&str> = table.iter().map(|(known, _)| *known).collect();
        format!("unknown {what} `{name}`; one of {}", known.join(", "))
    })
}
