//! What the stored file says about itself, in its key-value metadata: which
//! row groups hold which split and what each column is for.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::{Deserialize, Serialize};

use crate::api::datasets::{ColumnKind, Split, StoredColumn};

use super::error::DatasetError;

/// The key of the layout in the stored file's key-value metadata.
pub const LAYOUT_KEY: &str = "muon.dataset";

/// The row groups of one split: `first..first + count`, holding `rows` rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitGroups {
    /// Its first row group.
    pub first: usize,
    /// How many row groups.
    pub count: usize,
    /// Rows in them.
    pub rows: u64,
}

/// The stored label column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLabel {
    /// Its name.
    pub name: String,
    /// Numeric (fp64) or categorical (i64 class indices).
    pub kind: ColumnKind,
}

/// The layout of a stored dataset file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLayout {
    /// Each split's row groups (every split is present, maybe with none).
    pub splits: BTreeMap<Split, SplitGroups>,
    /// The fp64 columns that make `x`, in order.
    pub features: Vec<String>,
    /// The label, if any.
    pub label: Option<StoredLabel>,
    /// The preprocessor's tensor columns, if any.
    pub tensors: Vec<StoredColumn>,
}

impl StoredLayout {
    /// The layout of the stored file at `path`.
    pub fn read(path: &Path) -> Result<Self, DatasetError> {
        let file = File::open(path).map_err(|e| DatasetError::io("opening the stored dataset", e))?;
        let reader = SerializedFileReader::new(file).map_err(DatasetError::storage)?;
        let metadata = reader.metadata().file_metadata().key_value_metadata();
        let text = metadata
            .and_then(|pairs| pairs.iter().find(|kv| kv.key == LAYOUT_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| DatasetError::storage(format!("no `{LAYOUT_KEY}` metadata: not a muon dataset")))?;
        serde_json::from_str(&text).map_err(DatasetError::storage)
    }

    /// The row groups of `split`.
    pub fn groups(&self, split: Split) -> SplitGroups {
        self.splits.get(&split).copied().unwrap_or_default()
    }
}
