//! Normalises a list of numbers: `{"values": [..]}` in, z-scores and summary out.

use muon_sdk::{Json, Request, Response};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Input {
    values: Vec<f64>,
}

#[derive(Serialize)]
struct Output {
    count: usize,
    mean: f64,
    std_dev: f64,
    normalized: Vec<f64>,
}

#[muon_sdk::handler]
fn transform(req: Request) -> Result<Json<Output>, Response> {
    let input: Input = req.json().map_err(|err| {
        Response::json(&serde_json::json!({ "error": format!("expected {{\"values\": [numbers]}}: {err}") }))
            .with_status(400)
    })?;
    let count = input.values.len();
    let mean = if count == 0 { 0.0 } else { input.values.iter().sum::<f64>() / count as f64 };
    let variance =
        if count == 0 { 0.0 } else { input.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / count as f64 };
    let std_dev = variance.sqrt();
    let normalized = input.values.iter().map(|v| if std_dev > 0.0 { (v - mean) / std_dev } else { 0.0 }).collect();
    Ok(Json(Output { count, mean, std_dev, normalized }))
}
