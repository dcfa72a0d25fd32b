//! Turns a CSV record of wines into the `wine` model's input: one tensor `x`,
//! fp32 [rows, 13]. The parsing rules (optional header, optional trailing
//! label column) are [`wine_csv`]'s, the same as the `wine` handler's.

use muon_sdk::{NamedTensor, RawRecord};

#[muon_sdk::preprocessor]
fn preprocess(input: RawRecord) -> Result<Vec<NamedTensor>, String> {
    if !input.content_type.starts_with("text/csv") {
        return Err(format!("expected text/csv, got {}", input.content_type));
    }
    let text = std::str::from_utf8(&input.data).map_err(|e| format!("the CSV is not UTF-8: {e}"))?;
    let x = wine_csv::parse(text).map_err(|e| e.to_string())?;
    Ok(vec![NamedTensor::new("x", x)])
}
