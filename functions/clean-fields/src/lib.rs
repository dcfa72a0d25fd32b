//! An example preprocessor for dataset uploads (`preprocess=clean-fields`):
//! each record, a JSON object such as
//! `{"text": "  Great Wine ", "color": " RED ", "alcohol": 13.2}`, becomes one
//! tensor `x`, fp32 [3]: the alcohol, the colour as a class index (red 0,
//! white 1, rosé 2, after trimming and lowercasing; `rose` is rosé) and the
//! number of words of the trimmed text. A record it cannot clean (an unknown
//! colour, a missing field) is refused with the reason, and muon reports it
//! as a bad row with its line.

use muon_sdk::{NamedTensor, RawRecord, Tensor};

#[derive(serde::Deserialize)]
struct Record {
    text: String,
    color: String,
    alcohol: f32,
}

#[muon_sdk::preprocessor]
fn preprocess(input: RawRecord) -> Result<Vec<NamedTensor>, String> {
    if !input.content_type.starts_with("application/json") {
        return Err(format!("expected a JSON record (upload JSON Lines or Parquet), got {}", input.content_type));
    }
    let record: Record = serde_json::from_slice(&input.data).map_err(|e| format!("not a wine record: {e}"))?;
    let color = match record.color.trim().to_lowercase().as_str() {
        "red" => 0.0,
        "white" => 1.0,
        "rosé" | "rose" => 2.0,
        other => return Err(format!("unknown colour `{other}`; use red, white or rosé")),
    };
    let words = record.text.split_whitespace().count() as f32;
    Ok(vec![NamedTensor::new("x", Tensor::from_f32([3], &[record.alcohol, color, words]))])
}
