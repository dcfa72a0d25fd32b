//! The rows read, held by column: the good rows of the upload, typed as the
//! options say, before any cleaning. Every record ends either here
//! ([`Table::push`]) or in the bad-row log ([`Log::bad`]).

use std::collections::HashMap;

use crate::api::datasets::{BadRow, BadRowKind, BadRows, ColumnKind, ColumnRole, DatasetOptions};
use crate::engine::TensorType;

use super::error::{DatasetError, place_text};
use super::{BAD_ROWS_LISTED, MAX_CATEGORIES};

/// The class index of a missing category.
pub(crate) const MISSING_CODE: u32 = u32::MAX;

/// The most rows a table holds (row indices are `u32`).
const MAX_ROWS: usize = u32::MAX as usize - 1;

/// Where a record is in the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// CSV and JSON Lines: the 1-based line the record starts on.
    Line(u64),
    /// Parquet: the 0-based row index.
    Row(u64),
}

impl Place {
    fn parts(self) -> (Option<u64>, Option<u64>) {
        match self {
            Self::Line(line) => (Some(line), None),
            Self::Row(row) => (None, Some(row)),
        }
    }

    pub(crate) fn text(self) -> String {
        let (line, row) = self.parts();
        place_text(line, row)
    }
}

/// One value of a record, as its format gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    /// Absent, null, or a text pandas reads as missing (`""`, `NA`, `NaN`, `null`...).
    Missing,
    /// Text (CSV fields, JSON and Arrow strings).
    Text(&'a str),
    /// A number (JSON and Arrow numbers; booleans as 0 and 1).
    Number(f64),
}

/// Whether a text is read as a missing value: pandas' `read_csv` defaults
/// (a `match`, which compiles to a switch on the length, not 19 comparisons),
/// so that both count the same missing values in the same file.
fn is_missing_text(text: &str) -> bool {
    matches!(
        text,
        "" | "#N/A"
            | "#N/A N/A"
            | "#NA"
            | "-1.#IND"
            | "-1.#QNAN"
            | "-NaN"
            | "-nan"
            | "1.#IND"
            | "1.#QNAN"
            | "<NA>"
            | "N/A"
            | "NA"
            | "NULL"
            | "NaN"
            | "None"
            | "n/a"
            | "nan"
            | "null"
    ) || text.bytes().all(|b| b.is_ascii_whitespace())
}

impl<'a> Cell<'a> {
    /// A CSV field: missing if pandas would read it so, else text.
    pub(crate) fn from_text(text: &'a str) -> Self {
        if is_missing_text(text) { Self::Missing } else { Self::Text(text) }
    }
}

/// What one selected column is and where the source finds it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSpec {
    pub name: String,
    pub role: ColumnRole,
    pub kind: ColumnKind,
    pub source_type: String,
    /// Its index among the upload's columns.
    pub input: usize,
}

/// The values of one selected column.
#[derive(Debug)]
pub(crate) enum Values {
    /// NaN where missing.
    Numeric(Vec<f64>),
    /// Indices into `names`, [`MISSING_CODE`] where missing.
    Categorical { codes: Vec<u32>, names: Vec<String>, index: HashMap<String, u32> },
}

/// A selected column and its values.
#[derive(Debug)]
pub(crate) struct Column {
    pub spec: ColumnSpec,
    pub values: Values,
    /// Missing values among the good rows.
    pub missing: u64,
}

/// A preprocessor's output column: one tensor of a fixed type and shape per row.
#[derive(Debug)]
pub(crate) struct TensorColumn {
    pub name: String,
    pub ty: TensorType,
    pub dimensions: Vec<u32>,
    /// The rows' tensors, concatenated (little-endian elements, as the WIT tensor holds them).
    pub data: Vec<u8>,
}

/// The good rows.
#[derive(Debug)]
pub(crate) struct Table {
    pub columns: Vec<Column>,
    pub tensors: Vec<TensorColumn>,
    pub rows: usize,
    /// Rows with at least one missing feature value.
    pub missing_rows: u64,
    /// The first of them, as text.
    pub first_missing: Vec<String>,
}

/// A value checked, not yet stored.
enum Checked<'a> {
    Number(f64),
    Category(std::borrow::Cow<'a, str>),
    Missing,
}

impl Table {
    /// The table for an upload whose columns are `header` (with their types
    /// in the upload), selecting the columns the options name.
    pub(crate) fn new(
        header: &[String],
        source_types: &[String],
        options: &DatasetOptions,
        preprocessing: bool,
    ) -> Result<Self, DatasetError> {
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(DatasetError::DuplicateColumn(name.clone()));
            }
        }
        let find = |option: &'static str, column: &str| {
            header.iter().position(|h| h == column).ok_or_else(|| DatasetError::UnknownColumn {
                option,
                column: column.to_owned(),
                available: header.join(", "),
            })
        };
        for column in &options.categorical {
            find("categorical", column)?;
        }
        let label = options.label.as_deref().map(|label| find("label", label)).transpose()?;
        let features: Vec<usize> = match (&options.features, preprocessing) {
            // The preprocessor's tensors are the features.
            (_, true) => Vec::new(),
            (Some(features), false) => features.iter().map(|f| find("features", f)).collect::<Result<_, _>>()?,
            (None, false) => (0..header.len()).filter(|i| Some(*i) != label).collect(),
        };
        let spec = |input: usize, role| {
            let name = header[input].clone();
            let kind = if options.categorical.contains(&name) { ColumnKind::Categorical } else { ColumnKind::Numeric };
            let source_type = source_types.get(input).cloned().unwrap_or_default();
            ColumnSpec { name, role, kind, source_type, input }
        };
        let columns = features
            .into_iter()
            .map(|i| spec(i, ColumnRole::Feature))
            .chain(label.map(|i| spec(i, ColumnRole::Label)))
            .map(|spec| {
                let values = match spec.kind {
                    ColumnKind::Numeric => Values::Numeric(Vec::new()),
                    ColumnKind::Categorical => {
                        Values::Categorical { codes: Vec::new(), names: Vec::new(), index: HashMap::new() }
                    }
                };
                Column { spec, values, missing: 0 }
            })
            .collect();
        Ok(Self { columns, tensors: Vec::new(), rows: 0, missing_rows: 0, first_missing: Vec::new() })
    }

    /// The upload's column index of each selected column, in order.
    pub(crate) fn inputs(&self) -> Vec<usize> {
        self.columns.iter().map(|c| c.spec.input).collect()
    }

    /// Adds a record given as its selected columns' cells (in [`Self::inputs`]
    /// order). `Ok(Some(..))`: the record is bad, and nothing was added.
    pub(crate) fn push(
        &mut self,
        place: Place,
        cells: &[Cell<'_>],
    ) -> Result<Option<(BadRowKind, String)>, DatasetError> {
        let checked = match self.check(cells) {
            Ok(checked) => checked,
            Err(bad) => return Ok(Some(bad)),
        };
        if self.rows >= MAX_ROWS {
            return Err(DatasetError::TooManyRows(MAX_ROWS as u64));
        }
        let mut missing_in: Option<&str> = None;
        for (column, value) in self.columns.iter_mut().zip(checked) {
            if matches!(value, Checked::Missing) {
                column.missing += 1;
                missing_in.get_or_insert(&column.spec.name);
            }
            match (&mut column.values, value) {
                (Values::Numeric(values), Checked::Number(x)) => values.push(x),
                (Values::Numeric(values), _) => values.push(f64::NAN),
                (Values::Categorical { codes, names, index }, Checked::Category(text)) => {
                    let code = match index.get(text.as_ref()) {
                        Some(code) => *code,
                        None if names.len() >= MAX_CATEGORIES => {
                            return Err(DatasetError::TooManyCategories {
                                column: column.spec.name.clone(),
                                bound: MAX_CATEGORIES,
                            });
                        }
                        None => {
                            let code = names.len() as u32;
                            names.push(text.to_string());
                            index.insert(text.into_owned(), code);
                            code
                        }
                    };
                    codes.push(code);
                }
                (Values::Categorical { codes, .. }, _) => codes.push(MISSING_CODE),
            }
        }
        if let Some(column) = missing_in {
            self.missing_rows += 1;
            if self.first_missing.len() < 10 {
                self.first_missing.push(format!("{} (column `{column}`)", place.text()));
            }
        }
        self.rows += 1;
        Ok(None)
    }

    /// Checks every cell of a record before anything is stored, so a bad
    /// record leaves no trace (not even a category).
    fn check<'a>(&self, cells: &[Cell<'a>]) -> Result<Vec<Checked<'a>>, (BadRowKind, String)> {
        self.columns
            .iter()
            .zip(cells)
            .map(|(column, cell)| {
                let name = &column.spec.name;
                match (*cell, column.spec.kind) {
                    (Cell::Missing, _) if column.spec.role == ColumnRole::Label => {
                        Err((BadRowKind::MissingLabel, format!("the label `{name}` is missing")))
                    }
                    (Cell::Missing, _) => Ok(Checked::Missing),
                    (Cell::Number(x), ColumnKind::Numeric) if x.is_nan() => Ok(Checked::Missing),
                    (Cell::Number(x), ColumnKind::Numeric) if x.is_finite() => Ok(Checked::Number(x)),
                    (Cell::Number(x), ColumnKind::Numeric) => {
                        Err((BadRowKind::UnparsableNumber, format!("column `{name}`: {x} is not a finite number")))
                    }
                    (Cell::Text(text), ColumnKind::Numeric) => parse_number(name, text).map(Checked::Number),
                    (Cell::Number(x), ColumnKind::Categorical) if x.is_nan() => Ok(Checked::Missing),
                    (Cell::Number(x), ColumnKind::Categorical) => Ok(Checked::Category(number_text(x).into())),
                    (Cell::Text(text), ColumnKind::Categorical) => Ok(Checked::Category(text.into())),
                }
            })
            .collect()
    }
}

/// A CSV or JSON text in a numeric column: a finite number, surrounding blanks allowed.
fn parse_number(column: &str, text: &str) -> Result<f64, (BadRowKind, String)> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ if text.contains('"') => Err((
            BadRowKind::BrokenQuoting,
            format!("column `{column}`: `{}` has a stray quote; quote the whole field as RFC 4180 says", shorten(text)),
        )),
        _ => Err((
            BadRowKind::UnparsableNumber,
            format!(
                "column `{column}`: `{}` is not a finite number (list the column in categorical= if it holds \
                 categories)",
                shorten(text)
            ),
        )),
    }
}

/// A number as a category's text: whole numbers without a fraction (`3`, not `3.0`).
pub(crate) fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

/// A value quoted in a message, cut to 40 characters.
pub(crate) fn shorten(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() { format!("{head}...") } else { head }
}

/// Every record read, and the bad ones.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub read: u64,
    pub bad: BadRows,
}

impl Log {
    /// Counts a bad record and lists it if it is among the first.
    pub(crate) fn bad(&mut self, place: Place, kind: BadRowKind, reason: String) {
        self.bad.count += 1;
        *self.bad.by_kind.entry(kind).or_insert(0) += 1;
        // Bad rows come in file order from the parser, but a preprocessor's
        // come later, in rounds: keep the first ones by place, not by arrival.
        let (line, row) = place.parts();
        let at = self.bad.first.partition_point(|b| (b.line, b.row) <= (line, row));
        if at < BAD_ROWS_LISTED {
            self.bad.first.insert(at, BadRow { line, row, kind, reason });
            self.bad.first.truncate(BAD_ROWS_LISTED);
        }
    }

    /// Counts a record and adds it to `table` or to the bad rows.
    pub(crate) fn push(&mut self, table: &mut Table, place: Place, cells: &[Cell<'_>]) -> Result<(), DatasetError> {
        self.read += 1;
        if let Some((kind, reason)) = table.push(place, cells)? {
            self.bad(place, kind, reason);
        }
        Ok(())
    }

    /// Counts a record that is bad before its cells could be read.
    pub(crate) fn push_bad(&mut self, place: Place, kind: BadRowKind, reason: String) {
        self.read += 1;
        self.bad(place, kind, reason);
    }
}
