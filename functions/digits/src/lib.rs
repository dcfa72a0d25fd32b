//! Classifies 8x8 handwritten digits (scikit-learn's digits set: 64 pixels,
//! each 0 to 16) with the model the tenant uploaded as `digits`: input `x`
//! fp32 [N, 64], output `probabilities` fp32 [N, 10].
//!
//! `{"pixels": [64 numbers]}` answers `{"digit": d, "probabilities": [10]}`;
//! `{"images": [[64 numbers], ...]}` answers `{"digits": [...], "probabilities": [[10], ...]}`
//! from one batched run.

use muon_sdk::nn::{ErrorCode, Model};
use muon_sdk::{Request, Response, Tensor};
use serde::Deserialize;
use serde_json::json;

const PIXELS: usize = 64;
const CLASSES: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    pixels: Option<Vec<f32>>,
    images: Option<Vec<Vec<f32>>>,
}

#[muon_sdk::handler]
fn digits(req: Request) -> Response {
    let (images, batch) = match req.json::<Input>() {
        Ok(Input { pixels: Some(pixels), images: None }) => (vec![pixels], false),
        Ok(Input { pixels: None, images: Some(images) }) if !images.is_empty() => (images, true),
        Ok(_) => return bad_request("send either {\"pixels\": [64 numbers]} or {\"images\": [[64 numbers], ...]}"),
        Err(err) => return bad_request(format!("the body is not the expected JSON: {err}")),
    };
    if let Some(i) =
        images.iter().position(|image| image.len() != PIXELS || image.iter().any(|p| !(0.0..=16.0).contains(p)))
    {
        return bad_request(format!("image {i} must have exactly {PIXELS} pixels, each from 0 to 16"));
    }
    let Ok(rows) = u32::try_from(images.len()) else { return bad_request("too many images") };
    let outputs =
        Model::load("digits").and_then(|model| model.run(&[("x", Tensor::from_f32([rows, 64], &images.concat()))]));
    let outputs = match outputs {
        Ok(outputs) => outputs,
        Err(err) if err.code == ErrorCode::Timeout => return Response::error(504, err.code.as_str(), err),
        Err(err) => return Response::error(422, err.code.as_str(), err),
    };
    let probabilities = match outputs.get("probabilities").map(Tensor::to_f32) {
        Some(Ok(values)) if values.len() == images.len() * CLASSES => values,
        _ => {
            return Response::error(
                422,
                "unexpected_output",
                "the model has no fp32 output `probabilities` of shape [N, 10]",
            );
        }
    };
    let rows: Vec<&[f32]> = probabilities.chunks_exact(CLASSES).collect();
    let digits: Vec<usize> = rows.iter().map(|row| argmax(row)).collect();
    match (batch, digits.first(), rows.first()) {
        (false, Some(digit), Some(row)) => Response::json(&json!({ "digit": digit, "probabilities": row })),
        _ => Response::json(&json!({ "digits": digits, "probabilities": rows })),
    }
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    Response::error(400, "bad_request", message)
}

/// The index of the largest value, the first of equal ones as in numpy;
/// `total_cmp` so a NaN cannot upset the comparison.
fn argmax(values: &[f32]) -> usize {
    // `max_by` keeps the last of equal maxima, so search from the end.
    values.iter().enumerate().rev().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}
