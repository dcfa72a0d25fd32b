//! Classifies wines (scikit-learn's wine data set) with the model the tenant
//! uploaded as `wine`: input `x` fp32 [N, 13], output `probabilities` fp32 [N, 3].
//!
//! `POST` CSV rows of the 13 features (the rules are in [`wine_csv`]: an
//! optional header line, an optional 14th label column that is ignored); the
//! answer is `{"classes": [...], "probabilities": [[3 numbers], ...]}`, one
//! entry per row, from one batched run. The content type is not checked, so a
//! plain `curl --data-binary @wine.csv` works.

use muon_sdk::nn::{ErrorCode, Model};
use muon_sdk::{Request, Response, Tensor};
use serde_json::json;

const CLASSES: usize = 3;

#[muon_sdk::handler]
fn wine(req: Request) -> Response {
    let Ok(text) = req.text() else { return Response::error(400, "bad_request", "the body is not UTF-8 text") };
    let x = match wine_csv::parse(text) {
        Ok(x) => x,
        Err(err) => return Response::error(400, "bad_request", err),
    };
    let rows = x.element_count() / wine_csv::FEATURES;
    let outputs = match Model::load("wine").and_then(|model| model.run(&[("x", x)])) {
        Ok(outputs) => outputs,
        Err(err) if err.code == ErrorCode::Timeout => return Response::error(504, err.code.as_str(), err),
        Err(err) => return Response::error(422, err.code.as_str(), err),
    };
    let probabilities = match outputs.get("probabilities").map(Tensor::to_f32) {
        Some(Ok(values)) if values.len() == rows * CLASSES => values,
        _ => return Response::error(422, "unexpected_output", "the model has no fp32 output `probabilities` [N, 3]"),
    };
    let probabilities: Vec<&[f32]> = probabilities.chunks_exact(CLASSES).collect();
    let classes: Vec<usize> = probabilities.iter().map(|row| argmax(row)).collect();
    Response::json(&json!({ "classes": classes, "probabilities": probabilities }))
}

/// The index of the largest value, the first of equal ones as in numpy;
/// `total_cmp` so a NaN cannot upset the comparison.
fn argmax(values: &[f32]) -> usize {
    // `max_by` keeps the last of equal maxima, so search from the end.
    values.iter().enumerate().rev().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}
