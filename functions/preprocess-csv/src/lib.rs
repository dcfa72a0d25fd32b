//! Turns CSV rows of numbers into one `fp32` tensor `input` of shape [rows, columns].

use muon_sdk::{NamedTensor, RawRecord, Tensor};

#[muon_sdk::preprocessor]
fn preprocess(input: RawRecord) -> Result<Vec<NamedTensor>, String> {
    if !input.content_type.starts_with("text/csv") {
        return Err(format!("expected text/csv, got {}", input.content_type));
    }
    let text = std::str::from_utf8(&input.data).map_err(|e| format!("the CSV is not UTF-8: {e}"))?;
    let mut values = Vec::new();
    let mut columns = None;
    let mut rows = 0u32;
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Vec<f32> = line
            .split(',')
            .map(|cell| {
                cell.trim()
                    .parse::<f32>()
                    .map_err(|_| format!("line {}: `{}` is not a number", line_no + 1, cell.trim()))
            })
            .collect::<Result<_, _>>()?;
        match columns {
            None => columns = Some(row.len()),
            Some(n) if n != row.len() => {
                return Err(format!("line {}: {} columns, expected {n}", line_no + 1, row.len()));
            }
            Some(_) => {}
        }
        values.extend(row);
        rows += 1;
    }
    let columns = u32::try_from(columns.unwrap_or(0)).map_err(|_| "too many columns".to_owned())?;
    Ok(vec![NamedTensor::new("input", Tensor::from_f32([rows, columns], &values))])
}
