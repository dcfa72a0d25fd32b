//! `/v1/datasets`: a tenant's training data, uploaded, cleaned, split and
//! described.
//!
//! [`DatasetOptions`] are the query of `PUT /v1/datasets/{name}`, parsed
//! strictly by [`DatasetOptions::parse`]; [`DatasetReport`] is what the upload
//! answers and `GET /v1/datasets/{name}` shows; [`DatasetSummary`] is one
//! entry of `GET /v1/datasets`; [`RowsQuery`] and [`RowsPage`] are
//! `GET /v1/datasets/{name}/rows`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The query of `PUT /v1/datasets/{name}` as the client writes it; see
/// [`DatasetOptions`] for the parsed form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatasetQuery {
    /// The label column; absent for unsupervised data.
    pub label: Option<String>,
    /// Feature columns, comma-separated [default: every column but the label].
    pub features: Option<String>,
    /// Train, validation and test fractions: two or three parts summing to 1 [default: `0.8,0.1,0.1`].
    pub split: Option<String>,
    /// Seed of the split's shuffle; the same seed gives the same split [default: 0].
    pub seed: Option<u64>,
    /// Keep the label's class proportions in every split: `true` or `false` [default: false].
    pub stratify: Option<bool>,
    /// Rows with a missing value: `drop`, `mean`, `median` or `error` [default: `error`].
    pub missing: Option<String>,
    /// Drop repeated rows (same values in every selected column), keeping the first [default: false].
    pub dedupe: Option<bool>,
    /// Numeric features: `none`, `zscore` or `minmax`, with statistics of the train split [default: `none`].
    pub normalize: Option<String>,
    /// Columns holding categories, comma-separated: one-hot encoded, or class indices for the label.
    pub categorical: Option<String>,
    /// A preprocessor function of the same tenant, run on every record.
    pub preprocess: Option<String>,
    /// Bad rows tolerated (skipped and reported) before the upload is refused [default: 0].
    pub max_bad_rows: Option<u64>,
}

/// How rows with a missing value (empty, `NA`, `NaN`, `null`...) are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// The row is dropped.
    Drop,
    /// The value becomes the column's mean over the train split.
    Mean,
    /// The value becomes the column's median over the train split.
    Median,
    /// The upload is refused, naming the first rows with a missing value.
    #[default]
    Error,
}

impl Missing {
    /// The option as it appears in the query and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Mean => "mean",
            Self::Median => "median",
            Self::Error => "error",
        }
    }
}

/// How numeric features are scaled, with statistics of the train split only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// Values are stored as read.
    #[default]
    None,
    /// `(x - mean) / std`, with the sample standard deviation (ddof 1); a constant column is only centered.
    Zscore,
    /// `(x - min) / (max - min)`; a constant column becomes 0.
    Minmax,
}

impl Normalize {
    /// The option as it appears in the query and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zscore => "zscore",
            Self::Minmax => "minmax",
        }
    }
}

/// The fractions of the kept rows in each split; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SplitFractions {
    /// The train split's fraction.
    pub train: f64,
    /// The validation split's fraction (0 with a two-part split).
    pub validation: f64,
    /// The test split's fraction.
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self { train: 0.8, validation: 0.1, test: 0.1 }
    }
}

/// The options of one dataset build, parsed and checked; the report shows them as used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetOptions {
    /// The label column, if any.
    pub label: Option<String>,
    /// The feature columns in order; `None`: every column but the label, in file order.
    pub features: Option<Vec<String>>,
    /// The split's fractions. `split=a,b` is train and test; `split=a,b,c` train, validation and test.
    pub split: SplitFractions,
    /// Seed of the split's shuffle.
    pub seed: u64,
    /// Whether each split keeps the label's class proportions (within one row per class).
    pub stratify: bool,
    /// What happens to rows with a missing value.
    pub missing: Missing,
    /// Whether repeated rows are dropped.
    pub dedupe: bool,
    /// How numeric features are scaled.
    pub normalize: Normalize,
    /// Columns holding categories (every other selected column must hold numbers).
    pub categorical: Vec<String>,
    /// The preprocessor function, if any.
    pub preprocess: Option<String>,
    /// Bad rows tolerated before the upload is refused.
    pub max_bad_rows: u64,
}

/// A query option that is unknown or has a bad value; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);

/// The options every dataset upload accepts, as named in error messages.
const OPTION_NAMES: &str =
    "label, features, split, seed, stratify, missing, dedupe, normalize, categorical, preprocess, max_bad_rows";

impl DatasetOptions {
    /// Parses the query string of `PUT /v1/datasets/{name}` (without the `?`):
    /// an unknown option, a repeated one or a bad value is an error naming it.
    pub fn parse(query: &str) -> Result<Self, InvalidOption> {
        let mut options = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if seen.iter().any(|k| *k == key) {
                return Err(InvalidOption(format!("option `{key}` is given twice; give it once")));
            }
            seen.push(key.to_string());
            options.set(&key, &value)?;
        }
        options.check()?;
        Ok(options)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), InvalidOption> {
        match key {
            "label" => self.label = Some(column_name("label", value)?),
            "features" => self.features = Some(column_list("features", value)?),
            "split" => self.split = parse_split(value)?,
            "seed" => {
                self.seed = value.parse().map_err(|_| {
                    InvalidOption(format!("seed must be a whole number from 0 to {}, got `{value}`", u64::MAX))
                })?;
            }
            "stratify" => self.stratify = parse_bool("stratify", value)?,
            "dedupe" => self.dedupe = parse_bool("dedupe", value)?,
            "missing" => {
                self.missing = match value {
                    "drop" => Missing::Drop,
                    "mean" => Missing::Mean,
                    "median" => Missing::Median,
                    "error" => Missing::Error,
                    _ => {
                        return Err(InvalidOption(format!(
                            "missing must be drop, mean, median or error, got `{value}`"
                        )));
                    }
                };
            }
            "normalize" => {
                self.normalize = match value {
                    "none" => Normalize::None,
                    "zscore" => Normalize::Zscore,
                    "minmax" => Normalize::Minmax,
                    _ => return Err(InvalidOption(format!("normalize must be none, zscore or minmax, got `{value}`"))),
                };
            }
            "categorical" => self.categorical = column_list("categorical", value)?,
            "preprocess" => self.preprocess = Some(column_name("preprocess", value)?),
            "max_bad_rows" => {
                self.max_bad_rows = value.parse().map_err(|_| {
                    InvalidOption(format!("max_bad_rows must be a whole number (0 or more), got `{value}`"))
                })?;
            }
            other => return Err(InvalidOption(format!("unknown dataset option `{other}`; use {OPTION_NAMES}"))),
        }
        Ok(())
    }

    /// Checks the options against each other.
    fn check(&self) -> Result<(), InvalidOption> {
        if let (Some(label), Some(features)) = (&self.label, &self.features)
            && features.contains(label)
        {
            return Err(InvalidOption(format!(
                "column `{label}` is both the label and a feature; leave it out of features"
            )));
        }
        if self.stratify && self.label.is_none() {
            return Err(InvalidOption("stratify=true needs a label=COLUMN to stratify on".into()));
        }
        Ok(())
    }
}

fn parse_bool(what: &str, value: &str) -> Result<bool, InvalidOption> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(InvalidOption(format!("{what} must be true or false, got `{value}`"))),
    }
}

fn column_name(what: &str, value: &str) -> Result<String, InvalidOption> {
    if value.is_empty() {
        return Err(InvalidOption(format!("{what} is empty; name a column or leave the option out")));
    }
    Ok(value.to_owned())
}

fn column_list(what: &str, value: &str) -> Result<Vec<String>, InvalidOption> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',') {
        let name = name.trim();
        if name.is_empty() {
            return Err(InvalidOption(format!("{what} has an empty column name in `{value}`; write a,b,c")));
        }
        if names.iter().any(|n| n == name) {
            return Err(InvalidOption(format!("{what} names column `{name}` twice")));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// `split=0.8,0.2` (train, test) or `split=0.8,0.1,0.1` (train, validation, test).
fn parse_split(value: &str) -> Result<SplitFractions, InvalidOption> {
    let bad = |why: &str| {
        InvalidOption(format!(
            "split must be two or three fractions summing to 1, like 0.8,0.2 or 0.8,0.1,0.1: {why} in `{value}`"
        ))
    };
    let parts = value
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|_| bad(&format!("`{p}` is not a number"))))
        .collect::<Result<Vec<f64>, _>>()?;
    if parts.iter().any(|p| !p.is_finite() || *p < 0.0) {
        return Err(bad("a fraction is negative or not finite"));
    }
    let fractions = match parts[..] {
        [train, test] => SplitFractions { train, validation: 0.0, test },
        [train, validation, test] => SplitFractions { train, validation, test },
        _ => return Err(bad(&format!("{} parts", parts.len()))),
    };
    if ((fractions.train + fractions.validation + fractions.test) - 1.0).abs() > 1e-9 {
        return Err(bad("they do not sum to 1"));
    }
    if fractions.train <= 0.0 {
        return Err(bad("the train fraction is 0"));
    }
    Ok(fractions)
}

/// The three splits of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Rows to train on.
    Train,
    /// Rows to tune on.
    Validation,
    /// Rows to measure on.
    Test,
}

impl Split {
    /// The three, in storage order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The split as it appears in JSON and in `rows?split=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
            Self::Test => "test",
        }
    }

    /// The split named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// The upload's format, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// `text/csv`: a header row, RFC 4180 quoting, an optional UTF-8 BOM.
    Csv,
    /// `application/x-ndjson`: one JSON object per line.
    Jsonl,
    /// `application/vnd.apache.parquet`.
    Parquet,
}

/// Why a row was not kept as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BadRowKind {
    /// Not as many fields as the header (CSV), or a key the first record does not have (JSONL).
    Ragged,
    /// A value in a numeric column that is not a finite number.
    UnparsableNumber,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A quote that does not open or close a field as RFC 4180 says.
    BrokenQuoting,
    /// The label column is empty.
    MissingLabel,
    /// A JSON Lines line that is not a JSON object of numbers, strings, booleans and nulls.
    InvalidRecord,
    /// The preprocessor failed or trapped on the record.
    PreprocessFailed,
    /// The preprocessor's output has other tensors, types or shapes than for the first record.
    ShapeMismatch,
}

/// One bad row: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BadRow {
    /// CSV and JSON Lines: the 1-based line the record starts on (the CSV header is line 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Parquet: the 0-based index of the row in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// The kind of fault.
    pub kind: BadRowKind,
    /// What is wrong, naming the column and value where there is one.
    pub reason: String,
}

/// The bad rows of an upload: counted all, the first ones listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BadRows {
    /// Every bad row.
    pub count: u64,
    /// Bad rows by kind.
    pub by_kind: BTreeMap<BadRowKind, u64>,
    /// The first 100, in file order.
    pub first: Vec<BadRow>,
}

/// How many rows went where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowCounts {
    /// Records in the upload (bad ones included, the header not).
    pub read: u64,
    /// Rows stored: `read - dropped_bad - dropped_missing - deduplicated`.
    pub kept: u64,
    /// Bad rows, skipped (see `bad_rows`).
    pub dropped_bad: u64,
    /// Rows with a missing value, dropped by `missing=drop`.
    pub dropped_missing: u64,
    /// Repeats of an earlier row, dropped by `dedupe=true`.
    pub deduplicated: u64,
}

/// Rows in each split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SplitSizes {
    /// Rows in the train split.
    pub train: u64,
    /// Rows in the validation split.
    pub validation: u64,
    /// Rows in the test split.
    pub test: u64,
}

impl SplitSizes {
    /// The size of `split`.
    pub fn of(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.train,
            Split::Validation => self.validation,
            Split::Test => self.test,
        }
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Numbers, stored as fp64.
    Numeric,
    /// Categories (listed in `categorical=`): one-hot columns for a feature, class indices for the label.
    Categorical,
}

/// What a column is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnRole {
    /// An input of the model.
    Feature,
    /// What the model predicts.
    Label,
}

/// The statistics of a numeric column over the kept rows (every split), before normalization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NumericStats {
    /// Values counted (the kept rows).
    pub count: u64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// The arithmetic mean (two-pass, compensated sums in fp64).
    pub mean: f64,
    /// The sample standard deviation (ddof 1, as pandas' `describe` and `DataFrame.std`); null with one value.
    pub std: Option<f64>,
}

/// The scaling applied to a numeric feature: stored value = `(x - offset) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Normalization {
    /// `zscore` or `minmax`.
    pub method: Normalize,
    /// Subtracted first: the train split's mean (zscore) or minimum (minmax).
    pub offset: f64,
    /// Divided by next: the train split's sample std (zscore) or range (minmax); 1 where that is 0.
    pub scale: f64,
}

/// One selected column of the upload, as read and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColumnReport {
    /// The column's name in the upload.
    pub name: String,
    /// Feature or label.
    pub role: ColumnRole,
    /// Numeric or categorical.
    pub kind: ColumnKind,
    /// Its type in the upload: `text` for CSV, the JSON or Arrow type otherwise.
    pub source_type: String,
    /// Missing values among the rows read that were not bad.
    pub missing: u64,
    /// `missing=mean|median`: the value (from the train split) that missing values became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imputed: Option<f64>,
    /// `missing=mean|median` on a categorical feature: the train split's most frequent category, which missing
    /// values became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imputed_category: Option<String>,
    /// Numeric columns: statistics over the kept rows, after imputation and before normalization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<NumericStats>,
    /// Distinct values over the kept rows, counted up to a bound (see `distinct_capped`).
    pub distinct: u64,
    /// True when there are more distinct values than `distinct` (the counting bound, 10,000).
    pub distinct_capped: bool,
    /// Categorical columns: the categories in kept rows, in the order of their one-hot columns or class indices
    /// (numeric order when every category is a number, else lexical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// The scaling applied, for a normalized numeric feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalization: Option<Normalization>,
}

/// The label and its distribution in each split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LabelReport {
    /// The label column.
    pub column: String,
    /// Numeric (stored as fp64) or categorical (stored as i64 class indices).
    pub kind: ColumnKind,
    /// Rows per label value (a category, or a number as written in JSON) in each split; empty for a numeric
    /// label with more than 100 distinct values.
    pub distribution: BTreeMap<Split, BTreeMap<String, u64>>,
}

/// A column of the stored Parquet file, as the rows page and the training reader see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredColumn {
    /// Its name: a feature, `feature=category` for a one-hot column, the label, or a preprocessor tensor.
    pub name: String,
    /// `fp64`, `i64` (class indices), or a tensor's element type.
    #[serde(rename = "type")]
    pub ty: String,
    /// A tensor's shape (preprocessor outputs); empty for a scalar.
    pub shape: Vec<u64>,
}

/// What the preprocessor did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreprocessReport {
    /// The function.
    pub function: String,
    /// Records handed to it.
    pub records: u64,
    /// Bytes of those records.
    pub bytes_in: u64,
    /// Bytes of the tensors it answered.
    pub bytes_out: u64,
}

/// The dataset report: what an upload did to every row. `name`, `version`, `digest`, `size`
/// and `created_at_ms` are the catalog's; the rest is the build's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatasetReport {
    /// The dataset's name.
    pub name: String,
    /// Its version, from 1.
    pub version: u64,
    /// `sha256:` of the stored Parquet file.
    pub digest: String,
    /// Bytes of the stored Parquet file.
    pub size: u64,
    /// When this version was made, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The upload's format.
    pub format: DatasetFormat,
    /// Bytes of the upload.
    pub bytes_read: u64,
    /// Where the rows went.
    pub rows: RowCounts,
    /// Rows in each split.
    pub splits: SplitSizes,
    /// The selected columns (features, then the label), in file order.
    pub columns: Vec<ColumnReport>,
    /// The label, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelReport>,
    /// The bad rows skipped.
    pub bad_rows: BadRows,
    /// The stored file's columns, besides the split (rows are stored train, then validation, then test).
    pub stored_columns: Vec<StoredColumn>,
    /// The preprocessor's work, with `preprocess=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessReport>,
    /// The options used.
    pub options: DatasetOptions,
}

/// One dataset in `GET /v1/datasets`: its latest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatasetSummary {
    /// The dataset's name.
    pub name: String,
    /// Its latest version.
    pub version: u64,
    /// `sha256:` of the stored file.
    pub digest: String,
    /// Bytes stored.
    pub size: u64,
    /// Rows kept.
    pub rows: u64,
    /// Rows in each split.
    pub splits: SplitSizes,
    /// The label column, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the version was made, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

impl DatasetSummary {
    /// The summary of a report.
    pub fn of(report: &DatasetReport) -> Self {
        Self {
            name: report.name.clone(),
            version: report.version,
            digest: report.digest.clone(),
            size: report.size,
            rows: report.rows.kept,
            splits: report.splits,
            label: report.label.as_ref().map(|l| l.column.clone()),
            created_at_ms: report.created_at_ms,
        }
    }
}

/// `GET /v1/datasets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatasetList {
    /// The tenant's datasets, by name.
    pub datasets: Vec<DatasetSummary>,
}

/// The most rows one page of `GET /v1/datasets/{name}/rows` holds.
pub const MAX_ROWS_PAGE: u64 = 1000;

/// The query of `GET /v1/datasets/{name}/rows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RowsQuery {
    /// `train`, `validation` or `test` [default: train].
    pub split: Split,
    /// Rows of the split to skip [default: 0].
    pub offset: u64,
    /// Rows to answer, at most 1000 [default: 100].
    pub limit: u64,
    /// The dataset's version [default: the latest].
    pub version: Option<u64>,
}

impl Default for RowsQuery {
    fn default() -> Self {
        Self { split: Split::Train, offset: 0, limit: 100, version: None }
    }
}

impl RowsQuery {
    /// Parses the query string of the rows page strictly.
    pub fn parse(query: &str) -> Result<Self, InvalidOption> {
        let mut rows = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let number = |what: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| InvalidOption(format!("{what} must be a whole number (0 or more), got `{value}`")))
            };
            match key.as_ref() {
                "split" => {
                    rows.split = Split::parse(&value).ok_or_else(|| {
                        InvalidOption(format!("split must be train, validation or test, got `{value}`"))
                    })?;
                }
                "offset" => rows.offset = number("offset")?,
                "limit" => rows.limit = number("limit")?,
                "version" => rows.version = Some(number("version")?),
                other => {
                    return Err(InvalidOption(format!(
                        "unknown rows option `{other}`; use split, offset, limit, version"
                    )));
                }
            }
        }
        if rows.limit > MAX_ROWS_PAGE {
            return Err(InvalidOption(format!("limit must be at most {MAX_ROWS_PAGE}, got {}", rows.limit)));
        }
        Ok(rows)
    }
}

/// A page of rows of one split, after cleaning (as stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RowsPage {
    /// The split.
    pub split: Split,
    /// The first row's index in the split.
    pub offset: u64,
    /// Rows in the split.
    pub total: u64,
    /// The rows, each an object of stored column to value (a number, or a list for a tensor).
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issues() -> Result<(), InvalidOption> {
        let options = DatasetOptions::parse("")?;
        assert_eq!(options.split, SplitFractions { train: 0.8, validation: 0.1, test: 0.1 });
        assert_eq!((options.seed, options.stratify, options.dedupe), (0, false, false));
        assert_eq!((options.missing, options.normalize, options.max_bad_rows), (Missing::Error, Normalize::None, 0));
        assert_eq!((options.label, options.features, options.preprocess), (None, None, None));
        Ok(())
    }

    #[test]
    fn every_option_parses() -> Result<(), InvalidOption> {
        let options = DatasetOptions::parse(
            "label=y&features=a,b&split=0.7,0.3&seed=42&stratify=true&missing=median&dedupe=1\
             &normalize=zscore&categorical=b,y&max_bad_rows=5",
        )?;
        assert_eq!(options.label.as_deref(), Some("y"));
        assert_eq!(options.features, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(options.split, SplitFractions { train: 0.7, validation: 0.0, test: 0.3 });
        assert_eq!((options.seed, options.stratify, options.dedupe), (42, true, true));
        assert_eq!((options.missing, options.normalize), (Missing::Median, Normalize::Zscore));
        assert_eq!(options.categorical, vec!["b".to_owned(), "y".to_owned()]);
        assert_eq!(options.max_bad_rows, 5);
        assert_eq!(DatasetOptions::parse("preprocess=clean")?.preprocess.as_deref(), Some("clean"));
        Ok(())
    }

    #[test]
    fn bad_options_are_named() {
        for (query, named) in [
            ("split=0.5,0.2", "split"),
            ("split=0.5", "split"),
            ("split=a,b", "split"),
            ("split=1.2,-0.2", "split"),
            ("seed=-1", "seed"),
            ("missing=zero", "missing"),
            ("normalize=l2", "normalize"),
            ("stratify=yes", "stratify"),
            ("features=a,,b", "features"),
            ("categorical=a,a", "categorical"),
            ("max_bad_rows=x", "max_bad_rows"),
            ("colour=red", "colour"),
            ("seed=1&seed=2", "seed"),
            ("label=a&features=a,b", "label"),
            ("stratify=true", "stratify"),
        ] {
            let parsed = DatasetOptions::parse(query);
            assert!(parsed.as_ref().is_err_and(|e| e.0.contains(named)), "{query}: {parsed:?}");
        }
    }

    #[test]
    fn rows_query_is_bounded() -> Result<(), InvalidOption> {
        assert_eq!(RowsQuery::parse("")?, RowsQuery::default());
        let rows = RowsQuery::parse("split=test&offset=10&limit=1000&version=2")?;
        assert_eq!((rows.split, rows.offset, rows.limit, rows.version), (Split::Test, 10, 1000, Some(2)));
        assert!(RowsQuery::parse("limit=1001").is_err_and(|e| e.0.contains("limit")));
        assert!(RowsQuery::parse("split=dev").is_err_and(|e| e.0.contains("split")));
        Ok(())
    }

    #[test]
    fn label_distributions_serialize_with_splits_as_names() -> Result<(), serde_json::Error> {
        let mut distribution = BTreeMap::new();
        distribution.insert(Split::Train, BTreeMap::from([("a".to_owned(), 3)]));
        let label = LabelReport { column: "y".into(), kind: ColumnKind::Categorical, distribution };
        let json = serde_json::to_value(&label)?;
        assert_eq!(json["distribution"]["train"]["a"], 3);
        Ok(())
    }
}
