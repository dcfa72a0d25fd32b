//! CSV rows of the 13 features of scikit-learn's wine data set, parsed into
//! the model's input tensor `x`, fp32 [rows, 13].
//!
//! - Cells are separated by commas; blank lines are skipped.
//! - A first line with no number among its feature cells is a header and is
//!   skipped (`alcohol,malic_acid,...`).
//! - A row has the 13 features, optionally followed by a 14th cell that is
//!   ignored unread, so rows straight from the training file, with their
//!   `class` label, can be sent as they are.
#![deny(missing_docs)]

use muon_sdk::Tensor;

/// Features per row, in the data set's column order.
pub const FEATURES: usize = 13;

/// Why the CSV is not rows of wine features; the message names the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError(pub String);

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CsvError {}

/// The rows of `text` as one fp32 tensor of shape [rows, 13].
pub fn parse(text: &str) -> Result<Tensor, CsvError> {
    let mut values = Vec::new();
    let mut rows = 0u32;
    let mut first = true;
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let line_no = index + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let features = cells.get(..FEATURES).unwrap_or(&cells);
        if std::mem::take(&mut first) && features.iter().all(|cell| cell.parse::<f32>().is_err()) {
            continue;
        }
        if cells.len() != FEATURES && cells.len() != FEATURES + 1 {
            let found = cells.len();
            return Err(CsvError(format!(
                "line {line_no}: {found} columns, expected {FEATURES} features (and optionally a label)"
            )));
        }
        for cell in features {
            match cell.parse::<f32>() {
                Ok(value) if value.is_finite() => values.push(value),
                _ => return Err(CsvError(format!("line {line_no}: `{cell}` is not a number"))),
            }
        }
        rows = rows.checked_add(1).ok_or_else(|| CsvError("too many rows".to_owned()))?;
    }
    if rows == 0 {
        return Err(CsvError(format!("no rows: send lines of {FEATURES} comma-separated numbers")));
    }
    Ok(Tensor::from_f32([rows, FEATURES as u32], &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "14.23,1.71,2.43,15.6,127,2.8,3.06,.28,2.29,5.64,1.04,3.92,1065";

    #[test]
    fn rows_become_one_tensor() {
        let tensor = parse(&format!("{ROW}\n\n{ROW}\r\n")).map_err(|e| e.0);
        let tensor = tensor.as_ref().map(|t| (t.dimensions.clone(), t.to_f32().map(|v| v[12])));
        assert_eq!(tensor, Ok((vec![2, 13], Ok(1065.0))));
    }

    #[test]
    fn a_header_and_a_label_column_are_skipped() {
        let header = "alcohol,malic_acid,ash,alcalinity_of_ash,magnesium,total_phenols,flavanoids,\
                      nonflavanoid_phenols,proanthocyanins,color_intensity,hue,od280/od315_of_diluted_wines,proline,class";
        let tensor = parse(&format!("{header}\n{ROW},class_0\n{ROW},2\n")).map_err(|e| e.0);
        assert_eq!(tensor.map(|t| t.dimensions), Ok(vec![2, 13]));
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            (format!("{ROW}\n1,2,3"), "line 2: 3 columns"),
            (format!("{ROW}\n{}", ROW.replace("2.43", "x")), "line 2: `x` is not a number"),
            (ROW.replace("2.43", "x"), "line 1: `x` is not a number"),
            (format!("{ROW},1,2"), "line 1: 15 columns"),
            ("a,b,c\n".to_owned(), "no rows"),
            ("a,b,c\nd,e,f".to_owned(), "line 2: 3 columns"),
            (String::new(), "no rows"),
        ];
        for (text, expected) in cases {
            let message = parse(&text).err().map(|e| e.0).unwrap_or_default();
            assert!(message.starts_with(expected), "{text:?}: {message}");
        }
    }
}
