//! What can go wrong building or reading a dataset.

use crate::api::datasets::{BadRow, DatasetReport};

/// A dataset that cannot be built or read; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The content type is none of the three formats.
    #[error(
        "content type `{content_type}` is not a dataset format; send text/csv, application/x-ndjson or \
         application/vnd.apache.parquet"
    )]
    UnsupportedFormat {
        /// The content type given.
        content_type: String,
    },
    /// The upload has no header row (CSV) or no record to take the columns from.
    #[error("the upload has no {0}; send a header row and at least one record")]
    NoColumns(&'static str),
    /// The CSV header row is not UTF-8.
    #[error("the header row is not UTF-8 text; save the file as UTF-8")]
    HeaderNotUtf8,
    /// Two columns of the upload share a name.
    #[error("column `{0}` appears twice in the header; give every column its own name")]
    DuplicateColumn(String),
    /// An option names a column the upload does not have.
    #[error("{option} names column `{column}`, which the upload does not have; its columns are: {available}")]
    UnknownColumn {
        /// The option.
        option: &'static str,
        /// The column it names.
        column: String,
        /// The upload's columns, comma-separated.
        available: String,
    },
    /// The Parquet upload cannot be read, or has a column of a type datasets do not take.
    #[error("the Parquet upload cannot be read: {0}")]
    InvalidParquet(String),
    /// More bad rows than `max_bad_rows`; nothing is stored.
    #[error(
        "{count} bad rows, more than max_bad_rows={max}; the first: {first}. Fix those rows, or raise \
         max_bad_rows to skip them"
    )]
    BadRows {
        /// Bad rows counted.
        count: u64,
        /// The tolerated number.
        max: u64,
        /// The first bad rows, as text.
        first: String,
        /// The report so far (its `bad_rows` lists the first 100).
        report: Box<DatasetReport>,
    },
    /// `missing=error` and some rows have a missing value.
    #[error(
        "{count} rows have a missing value (missing=error), the first: {first}; choose missing=drop, \
         missing=mean or missing=median, or fill them in"
    )]
    MissingValues {
        /// Rows with a missing value.
        count: u64,
        /// The first of them, as text (line or row, and column).
        first: String,
    },
    /// A categorical column has too many categories.
    #[error("column `{column}` has more than {bound} categories; leave it out of categorical= and features=")]
    TooManyCategories {
        /// The column.
        column: String,
        /// The bound.
        bound: usize,
    },
    /// Stratification over a label with too many distinct values.
    #[error("stratify=true needs a label with at most {bound} classes, and `{column}` has more")]
    TooManyClasses {
        /// The label.
        column: String,
        /// The bound.
        bound: usize,
    },
    /// More rows than a dataset holds.
    #[error("the upload has more than {0} rows; split it into several datasets")]
    TooManyRows(u64),
    /// No row is left to store.
    #[error("no row is left after cleaning ({0}); check the report's bad rows and the options")]
    Empty(String),
    /// The cursor given to the reader is not one it made for this split.
    #[error("the cursor does not fit this dataset: {0}; start from the beginning (no cursor)")]
    InvalidCursor(String),
    /// Reading the upload or writing or reading the stored file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// The stored file cannot be written or read back (a host-side failure).
    #[error("the stored dataset file: {0}")]
    Storage(String),
    /// No such dataset, or no such version of it, for this tenant.
    #[error("{0} was not found")]
    NotFound(String),
    /// Storing it would pass the tenant's storage quota.
    #[error(transparent)]
    Quota(#[from] crate::tenancy::QuotaExceeded),
    /// The catalog failed (the database).
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl DatasetError {
    /// An I/O failure while doing `what`.
    pub(crate) fn io(what: &'static str, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }

    /// A failure of the stored file.
    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        Self::Storage(error.to_string())
    }

    /// Whether the client's upload or request is at fault (a `4xx`), rather than the host.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Storage(_) | Self::Internal(_))
    }
}

/// Bad rows as one line of text: `line 3: reason; row 5: reason`.
pub(crate) fn describe_rows(rows: &[BadRow], at_most: usize) -> String {
    rows.iter()
        .take(at_most)
        .map(|row| format!("{}: {}", place_text(row.line, row.row), row.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `line N` or `row N`.
pub(crate) fn place_text(line: Option<u64>, row: Option<u64>) -> String {
    match (line, row) {
        (Some(line), _) => format!("line {line}"),
        (None, Some(row)) => format!("row {row}"),
        (None, None) => "a record".to_owned(),
    }
}
