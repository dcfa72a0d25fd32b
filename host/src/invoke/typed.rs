//! Typed functions (preprocessor, training-step) called with JSON, for testing
//! them over `POST /v1/functions/{name}/invoke`.
//!
//! Tensors travel as `{"name", "dimensions", "type", "data"}` where `data`
//! holds the elements as JSON numbers in row-major order.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InvokeError;
use super::{Input, Output};
use crate::engine::{FunctionKind, NamedTensor, Tensor, TensorType};

/// A tensor as JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonTensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape.
    pub dimensions: Vec<u32>,
    /// Its element type (`fp32`, `i64`, ...).
    #[serde(rename = "type")]
    pub ty: String,
    /// The elements, row-major.
    pub data: Vec<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreprocessInput {
    content_type: String,
    /// The record as text.
    #[serde(default)]
    data: Option<String>,
    /// The record as base64, for binary input.
    #[serde(default)]
    data_base64: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum TrainingInput {
    Init {
        #[serde(default)]
        config: Value,
    },
    Step {
        parameters: Vec<JsonTensor>,
        batch: Vec<JsonTensor>,
        #[serde(default)]
        hyper_parameters: std::collections::BTreeMap<String, f64>,
    },
    Evaluate {
        parameters: Vec<JsonTensor>,
        batch: Vec<JsonTensor>,
    },
}

/// The input of a typed function of `kind` from its JSON form.
pub fn input(kind: FunctionKind, json: &[u8]) -> Result<Input, InvokeError> {
    let parse_error = |err: serde_json::Error| InvokeError::BadInput(format!("invalid invoke input: {err}"));
    match kind {
        FunctionKind::Preprocessor => {
            let input: PreprocessInput = serde_json::from_slice(json).map_err(parse_error)?;
            Ok(Input::Preprocess(raw_record(input)?))
        }
        FunctionKind::TrainingStep => match serde_json::from_slice(json).map_err(parse_error)? {
            TrainingInput::Init { config } => {
                let config = match config {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                Ok(Input::TrainInit { config })
            }
            TrainingInput::Step { parameters, batch, hyper_parameters } => Ok(Input::TrainStep {
                parameters: tensors_from_json(parameters)?,
                batch: tensors_from_json(batch)?,
                hyper: hyper_parameters.into_iter().collect(),
            }),
            TrainingInput::Evaluate { parameters, batch } => Ok(Input::TrainEvaluate {
                parameters: tensors_from_json(parameters)?,
                batch: tensors_from_json(batch)?,
            }),
        },
        FunctionKind::Handler | FunctionKind::Streaming | FunctionKind::Http => {
            Err(InvokeError::BadInput("an HTTP function has no typed input; call it at /fn/{tenant}/{name}".into()))
        }
    }
}

/// A typed function's output as JSON, at most `limit` bytes long.
pub fn output(output: &Output, limit: u64) -> Result<Vec<u8>, InvokeError> {
    match output {
        Output::Tensors(tensors) => {
            output_json(&TensorsOutput { tensors: TensorList::checked(tensors, limit)? }, limit)
        }
        Output::Parameters(parameters) => {
            output_json(&ParametersOutput { parameters: TensorList::checked(parameters, limit)? }, limit)
        }
        Output::Step(step) => {
            let step = StepJson {
                parameters: TensorList::checked(&step.parameters, limit)?,
                loss: step.loss,
                metrics: step.metrics.iter().map(|(name, value)| (name.as_str(), *value)).collect(),
            };
            output_json(&step, limit)
        }
        Output::Evaluation(evaluation) => {
            let evaluation = EvaluationJson {
                metrics: evaluation.metrics.iter().map(|(name, value)| (name.as_str(), *value)).collect(),
                predictions: &evaluation.predictions,
            };
            output_json(&evaluation, limit)
        }
        Output::Http(_) | Output::Stream(_) => {
            Err(InvokeError::Internal(anyhow::anyhow!("an HTTP response is not a typed output")))
        }
        // Only a job's steps run several batches in one call.
        Output::Steps(_) => Err(InvokeError::Internal(anyhow::anyhow!("several steps are not a typed output"))),
    }
}

fn raw_record(input: PreprocessInput) -> Result<crate::engine::RawRecord, InvokeError> {
    let data = match (input.data, input.data_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|err| InvokeError::BadInput(format!("data_base64 is not valid base64: {err}")))?,
        _ => {
            return Err(InvokeError::BadInput("give exactly one of `data` (text) or `data_base64`".to_owned()));
        }
    };
    Ok(crate::engine::RawRecord { content_type: input.content_type, data })
}

fn tensor_type(name: &str) -> Result<TensorType, InvokeError> {
    Ok(match name {
        "fp16" => TensorType::Fp16,
        "fp32" => TensorType::Fp32,
        "fp64" => TensorType::Fp64,
        "bf16" => TensorType::Bf16,
        "u8" => TensorType::U8,
        "i32" => TensorType::I32,
        "i64" => TensorType::I64,
        other => {
            return Err(InvokeError::BadInput(format!(
                "unknown tensor type `{other}`; use fp16, fp32, fp64, bf16, u8, i32 or i64"
            )));
        }
    })
}

fn type_name(ty: TensorType) -> &'static str {
    match ty {
        TensorType::Fp16 => "fp16",
        TensorType::Fp32 => "fp32",
        TensorType::Fp64 => "fp64",
        TensorType::Bf16 => "bf16",
        TensorType::U8 => "u8",
        TensorType::I32 => "i32",
        TensorType::I64 => "i64",
    }
}

fn element_size(ty: TensorType) -> usize {
    match ty {
        TensorType::U8 => 1,
        TensorType::Fp16 | TensorType::Bf16 => 2,
        TensorType::Fp32 | TensorType::I32 => 4,
        TensorType::Fp64 | TensorType::I64 => 8,
    }
}

fn tensors_from_json(tensors: Vec<JsonTensor>) -> Result<Vec<NamedTensor>, InvokeError> {
    tensors.into_iter().map(tensor_from_json).collect()
}

fn tensor_from_json(json: JsonTensor) -> Result<NamedTensor, InvokeError> {
    let ty = tensor_type(&json.ty)?;
    let count = json
        .dimensions
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| InvokeError::BadInput(format!("tensor `{}`: dimensions overflow", json.name)))?;
    if count != json.data.len() {
        return Err(InvokeError::BadInput(format!(
            "tensor `{}`: dimensions {:?} hold {count} elements but data has {}",
            json.name,
            json.dimensions,
            json.data.len()
        )));
    }
    let mut data = Vec::with_capacity(count * element_size(ty));
    for &x in &json.data {
        match ty {
            TensorType::Fp32 => data.extend_from_slice(&(x as f32).to_le_bytes()),
            TensorType::Fp64 => data.extend_from_slice(&x.to_le_bytes()),
            TensorType::I32 => data.extend_from_slice(&(x as i32).to_le_bytes()),
            TensorType::I64 => data.extend_from_slice(&(x as i64).to_le_bytes()),
            TensorType::U8 => data.push(x as u8),
            TensorType::Bf16 => data.extend_from_slice(&(((x as f32).to_bits() >> 16) as u16).to_le_bytes()),
            TensorType::Fp16 => {
                return Err(InvokeError::BadInput("fp16 tensors are not accepted as JSON; use fp32".into()));
            }
        }
    }
    Ok(NamedTensor { name: json.name, tensor: Tensor { dimensions: json.dimensions, ty, data } })
}

/// The JSON output of a preprocessor.
#[derive(Serialize)]
struct TensorsOutput<'a> {
    tensors: TensorList<'a>,
}

/// The JSON output of a training step's `init`.
#[derive(Serialize)]
struct ParametersOutput<'a> {
    parameters: TensorList<'a>,
}

/// The JSON output of a training step's `step`.
#[derive(Serialize)]
struct StepJson<'a> {
    parameters: TensorList<'a>,
    loss: f64,
    metrics: std::collections::BTreeMap<&'a str, f64>,
}

/// The JSON output of a training step's `evaluate`.
#[derive(Serialize)]
struct EvaluationJson<'a> {
    metrics: std::collections::BTreeMap<&'a str, f64>,
    predictions: &'a [i64],
}

/// A guest's tensors, serialized element by element straight from their
/// bytes: no copy of the output as numbers or as a JSON tree is ever made.
struct TensorList<'a>(&'a [NamedTensor]);

impl<'a> TensorList<'a> {
    /// The tensors, once each is known to be whole and their JSON could fit
    /// in `limit` bytes (every element takes at least two: a digit and a comma).
    fn checked(tensors: &'a [NamedTensor], limit: u64) -> Result<Self, InvokeError> {
        let mut elements = 0u64;
        for named in tensors {
            let size = element_size(named.tensor.ty);
            if !named.tensor.data.len().is_multiple_of(size) {
                return Err(InvokeError::Trap(format!(
                    "the function returned tensor `{}` whose byte length {} is not a multiple of {size}",
                    named.name,
                    named.tensor.data.len()
                )));
            }
            elements = elements.saturating_add((named.tensor.data.len() / size) as u64);
        }
        if elements.saturating_mul(2) > limit {
            return Err(InvokeError::ResponseTooLarge { limit });
        }
        Ok(Self(tensors))
    }
}

impl Serialize for TensorList<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(TensorJson))
    }
}

/// One tensor in the JSON form of [`JsonTensor`].
struct TensorJson<'a>(&'a NamedTensor);

impl Serialize for TensorJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let tensor = &self.0.tensor;
        let size = element_size(tensor.ty);
        let mut out = serializer.serialize_struct("JsonTensor", 4)?;
        out.serialize_field("name", &self.0.name)?;
        out.serialize_field("dimensions", &tensor.dimensions)?;
        out.serialize_field("type", type_name(tensor.ty))?;
        out.serialize_field("data", &Elements { bytes: &tensor.data, size, ty: tensor.ty })?;
        out.end()
    }
}

/// A tensor's elements as JSON numbers.
struct Elements<'a> {
    bytes: &'a [u8],
    size: usize,
    ty: TensorType,
}

impl Serialize for Elements<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.bytes.chunks_exact(self.size).map(|b| element(self.ty, b)))
    }
}

/// One element from its little-endian bytes (`b` is exactly one element long).
fn element(ty: TensorType, b: &[u8]) -> f64 {
    let eight = || <[u8; 8]>::try_from(b).unwrap_or_default();
    match ty {
        TensorType::Fp32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        TensorType::Fp64 => f64::from_le_bytes(eight()),
        TensorType::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        TensorType::I64 => i64::from_le_bytes(eight()) as f64,
        TensorType::U8 => f64::from(b[0]),
        TensorType::Bf16 => f64::from(f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        TensorType::Fp16 => f64::from(f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
    }
}

/// Serializes `output` into at most `limit` bytes, stopping as soon as it
/// passes the limit: the host never holds more than the response cap.
fn output_json(output: &impl Serialize, limit: u64) -> Result<Vec<u8>, InvokeError> {
    let mut writer =
        CappedWriter { bytes: Vec::new(), limit: usize::try_from(limit).unwrap_or(usize::MAX), overflowed: false };
    match serde_json::to_writer(&mut writer, output) {
        Ok(()) => Ok(writer.bytes),
        Err(_) if writer.overflowed => Err(InvokeError::ResponseTooLarge { limit }),
        Err(err) => Err(InvokeError::Internal(anyhow::anyhow!("cannot serialize the function's output: {err}"))),
    }
}

/// A `Vec` that refuses to grow past `limit`.
struct CappedWriter {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            self.overflowed = true;
            self.bytes = Vec::new();
            return Err(std::io::Error::other("over the response size cap"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_through_json() -> Result<(), InvokeError> {
        let json =
            JsonTensor { name: "x".into(), dimensions: vec![2, 2], ty: "fp32".into(), data: vec![1.0, -2.5, 3.0, 0.0] };
        let tensor = tensor_from_json(json)?;
        assert_eq!(tensor.tensor.data.len(), 16);
        let tensors = [tensor];
        let text = output_json(&TensorsOutput { tensors: TensorList::checked(&tensors, 1 << 20)? }, 1 << 20)?;
        let back: Vec<JsonTensor> = serde_json::from_value(
            serde_json::from_slice::<Value>(&text).map_err(anyhow::Error::from)?["tensors"].take(),
        )
        .map_err(anyhow::Error::from)?;
        assert_eq!(back[0].data, vec![1.0, -2.5, 3.0, 0.0]);
        assert_eq!((back[0].ty.as_str(), back[0].dimensions.as_slice()), ("fp32", &[2, 2][..]));
        Ok(())
    }

    #[test]
    fn output_over_the_cap_is_refused_without_being_built() -> Result<(), InvokeError> {
        let tensors = [NamedTensor {
            name: "w".into(),
            tensor: Tensor { dimensions: vec![1000], ty: TensorType::Fp32, data: vec![0; 4000] },
        }];
        // 1000 elements need at least 2000 bytes of JSON: refused before serializing.
        assert!(matches!(TensorList::checked(&tensors, 1999), Err(InvokeError::ResponseTooLarge { limit: 1999 })));
        // "0.0," is 4 bytes per element: passes the first check, stopped while writing.
        let list = TensorList::checked(&tensors, 3000)?;
        assert!(matches!(
            output_json(&TensorsOutput { tensors: list }, 3000),
            Err(InvokeError::ResponseTooLarge { .. })
        ));
        Ok(())
    }

    #[test]
    fn wrong_element_count_is_rejected() {
        let json = JsonTensor { name: "x".into(), dimensions: vec![3], ty: "i64".into(), data: vec![1.0] };
        assert!(matches!(tensor_from_json(json), Err(InvokeError::BadInput(m)) if m.contains("3 elements")));
    }

    #[test]
    fn half_precision_decodes() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
    }
}
