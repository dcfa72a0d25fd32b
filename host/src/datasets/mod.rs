//! Datasets: an upload (CSV, JSON Lines or Parquet) read record by record,
//! cleaned, split, described and stored as one Parquet file; and the reader
//! that hands a split to training as named tensors.
//!
//! [`build`] is the whole of an upload below HTTP: synchronous and CPU-bound
//! (call it from `spawn_blocking`). It reads the spooled file, reports every
//! bad row with its line (CSV, JSON Lines) or row index (Parquet), applies the
//! options ([`crate::api::DatasetOptions`]) and writes the dataset:
//!
//! - Parsing is real parsers only: BurntSushi's `csv` (RFC 4180, the BOM),
//!   `serde_json` per line, Apache Arrow's `parquet`.
//! - A CSV upload is parsed on one thread and converted on another, and the
//!   Parquet output is encoded on a thread of its own, so both cores work.
//! - The stored file holds the kept rows, train first, then validation, then
//!   test, each split in file order; every row group belongs to one split
//!   (its key-value metadata `muon.dataset` says which, see [`StoredLayout`]).
//!   Columns: each numeric feature (fp64, normalized), one fp64 0/1 column
//!   `feature=category` per category of a categorical feature, each
//!   preprocessor tensor (a fixed-size list), and the label (fp64, or i64
//!   class indices for a categorical one).
//!
//! [`SplitReader`] reads one split back in batches, by row group, shuffled
//! with a seed and resumable from a [`Cursor`]; [`rows_page`] answers the
//! rows route.
//!
//! With a preprocessor, its tensors are the features: `features=` and
//! `normalize=` do not apply, `categorical=` only to the label, which (if
//! any) still comes from the record. [`crate::api::PreprocessReport`] in
//! the report carries the metering inputs (records, bytes in and out).
//!
//! Errors: [`DatasetError::is_client_error`] tells the upload's faults
//! (`BadRows` and `MissingValues` are the data's: `422`; the others `400`,
//! `UnsupportedFormat` a `415`) from the host's (`Io`, `Storage`: `500`).

mod clean;
mod error;
mod function;
mod layout;
mod preprocess;
mod reader;
mod source;
mod stats;
mod store;
mod table;
mod write;

use std::path::Path;

pub use error::DatasetError;
pub use function::FunctionPreprocessor;
pub use layout::{LAYOUT_KEY, SplitGroups, StoredLabel, StoredLayout};
pub use preprocess::Preprocessor;
pub use reader::{Batch, Cursor, SplitReader, rows_page};
pub use store::{DatasetStore, SpoolFile};

use crate::api::datasets::{DatasetFormat, DatasetOptions, DatasetReport};

/// The most bad rows a report lists; the rest are counted.
pub const BAD_ROWS_LISTED: usize = 100;

/// The most categories one categorical column may have (each is a one-hot column or a class).
pub const MAX_CATEGORIES: usize = 1000;

/// Distinct values are counted up to this many per column.
pub const DISTINCT_BOUND: usize = 10_000;

/// Rows per row group of the stored file, and so the reader's shuffle buffer.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// The format of an upload, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/csv`.
    Csv,
    /// `application/x-ndjson`.
    Jsonl,
    /// `application/vnd.apache.parquet`.
    Parquet,
}

impl Format {
    /// The format of a `Content-Type` (parameters such as `; charset=utf-8` are ignored).
    pub fn from_content_type(content_type: &str) -> Result<Self, DatasetError> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" => Ok(Self::Csv),
            "application/x-ndjson" | "application/jsonl" => Ok(Self::Jsonl),
            "application/vnd.apache.parquet" => Ok(Self::Parquet),
            _ => Err(DatasetError::UnsupportedFormat { content_type: content_type.to_owned() }),
        }
    }

    /// The format as the report names it.
    pub fn api(self) -> DatasetFormat {
        match self {
            Self::Csv => DatasetFormat::Csv,
            Self::Jsonl => DatasetFormat::Jsonl,
            Self::Parquet => DatasetFormat::Parquet,
        }
    }
}

/// Builds a dataset: reads `input` (the spooled upload, in `format`), cleans,
/// splits and normalizes it as `options` say, runs every record through
/// `preprocessor` when there is one, writes the dataset as one Parquet file at
/// `output`, and answers the report. The report's `name`, `version`, `digest`,
/// `size` and `created_at_ms` are left empty for the caller, who stores the
/// file. On an error `output` may hold a partial file: the caller removes it.
pub fn build(
    input: &Path,
    format: Format,
    options: &DatasetOptions,
    preprocessor: Option<&dyn Preprocessor>,
    output: &Path,
) -> Result<DatasetReport, DatasetError> {
    let bytes_read = std::fs::metadata(input).map_err(|e| DatasetError::io("reading the upload", e))?.len();
    let source::Ingested { table, log, preprocess } = source::ingest(input, format, options, preprocessor)?;
    let mut report = clean::base_report(&table, format.api(), bytes_read, log.read, log.bad, options);
    report.preprocess = preprocess;
    if report.bad_rows.count > options.max_bad_rows {
        return Err(DatasetError::BadRows {
            count: report.bad_rows.count,
            max: options.max_bad_rows,
            first: error::describe_rows(&report.bad_rows.first, 5),
            report: Box::new(report),
        });
    }
    let cleaned = clean::clean(table, options, report.rows.read, report.bad_rows.count)?;
    let mut report = cleaned.report(report);
    write::write(&cleaned, &mut report, output)?;
    Ok(report)
}

#[cfg(test)]
mod tests;
