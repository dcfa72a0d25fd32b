//! Reading a stored split back: [`SplitReader`] for training, in batches of
//! named tensors, and [`rows_page`] for the rows route.
//!
//! The reader holds one row group (at most [`ROW_GROUP_ROWS`] rows, its
//! features as fp32 rows) and the batch it is building, never more.
//! Shuffling stays bounded that way: with a seed, the split's row groups
//! are visited in a seeded order and the rows of each group in a seeded
//! order of their own (seeded by the seed and the group). Every row comes
//! once per pass; rows of different row groups never mix within a group's
//! span, which with 65,536-row groups written in file order is the usual
//! trade of a bounded shuffle buffer. A [`Cursor`] is the rows handed out
//! so far in the pass: the order is a function of the seed, so resuming
//! recomputes it and skips that many rows. Use another seed for each epoch
//! (`seed + epoch`, say), through [`SplitReader::restart`]: a split of one
//! row group is then decoded once, not once an epoch.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt8Type, UInt16Type};
use arrow_array::{Array, Float64Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use serde::{Deserialize, Serialize};

use crate::api::datasets::{ColumnKind, RowsPage, Split};
use crate::engine::{NamedTensor, Tensor, TensorType};

use super::clean::{rng, shuffle};
use super::error::DatasetError;
use super::layout::StoredLayout;
use super::preprocess::type_named;

/// Where a pass over a split stands: small, serializable, handed back to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The split read.
    pub split: Split,
    /// The shuffle's seed, or `None` for file order.
    pub seed: Option<u64>,
    /// Rows handed out so far in this pass.
    pub position: u64,
}

/// One batch for training.
#[derive(Debug)]
pub struct Batch {
    /// `x` fp32 `[n, features]` and `y` (fp32 `[n]`, or i64 `[n]` class indices), or the
    /// preprocessor's tensors `[n, ...shape]` (and `y` when there is a label).
    pub tensors: Vec<NamedTensor>,
    /// Rows in the batch.
    pub rows: usize,
    /// Where to resume after this batch.
    pub cursor: Cursor,
}

/// The row group being read, and the order its rows go out in.
struct Loaded {
    /// Its index in the file.
    group: usize,
    batch: RecordBatch,
    /// The feature columns as fp32, row after row: made once per row group,
    /// so that a batch's `x` is a copy of whole rows.
    x: Vec<f32>,
    /// Features a row.
    width: usize,
    order: Vec<u32>,
    next: usize,
}

/// Reads one split of a stored dataset in batches; see the module's doc for the shuffle.
pub struct SplitReader {
    path: PathBuf,
    metadata: ArrowReaderMetadata,
    layout: StoredLayout,
    batch_size: usize,
    /// Row groups in visiting order, with their rows.
    groups: Vec<(usize, usize)>,
    next_group: usize,
    loaded: Option<Loaded>,
    cursor: Cursor,
}

impl std::fmt::Debug for SplitReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitReader").field("path", &self.path).field("cursor", &self.cursor).finish()
    }
}

impl SplitReader {
    /// A reader of `split` of the dataset file at `path`, `batch_size` rows a batch,
    /// shuffled with `seed` (or in file order), from the start or from `resume`.
    pub fn open(
        path: &Path,
        split: Split,
        batch_size: usize,
        seed: Option<u64>,
        resume: Option<Cursor>,
    ) -> Result<Self, DatasetError> {
        let layout = StoredLayout::read(path)?;
        let file = File::open(path).map_err(|e| DatasetError::io("opening the stored dataset", e))?;
        let metadata = ArrowReaderMetadata::load(&file, Default::default()).map_err(DatasetError::storage)?;
        let split_groups = layout.groups(split);
        let row_groups = metadata.metadata().row_groups();
        let mut groups = Vec::with_capacity(split_groups.count);
        for g in split_groups.first..split_groups.first + split_groups.count {
            let rows = row_groups
                .get(g)
                .map(|rg| rg.num_rows())
                .ok_or_else(|| DatasetError::storage("a row group is missing"))?;
            groups.push((g, usize::try_from(rows).unwrap_or(0)));
        }
        if let Some(seed) = seed {
            shuffle(&mut groups, &mut rng(seed));
        }
        let cursor = Cursor { split, seed, position: 0 };
        let mut reader = Self {
            path: path.to_owned(),
            metadata,
            layout,
            batch_size: batch_size.max(1),
            groups,
            next_group: 0,
            loaded: None,
            cursor,
        };
        if let Some(resume) = resume {
            reader.resume(resume)?;
        }
        Ok(reader)
    }

    /// Starts a new pass over the split, shuffled with `seed` (or in file
    /// order), as a reader opened afresh would read it. The row group in
    /// memory is kept for the new pass, so a split of one group is read
    /// from the file once, however many passes.
    pub fn restart(&mut self, seed: Option<u64>) {
        self.groups.sort_unstable();
        if let Some(seed) = seed {
            shuffle(&mut self.groups, &mut rng(seed));
        }
        self.next_group = 0;
        self.cursor = Cursor { split: self.cursor.split, seed, position: 0 };
        if let Some(loaded) = &mut self.loaded {
            loaded.next = loaded.order.len();
        }
    }

    /// The layout of the file read.
    pub fn layout(&self) -> &StoredLayout {
        &self.layout
    }

    fn resume(&mut self, resume: Cursor) -> Result<(), DatasetError> {
        if resume.split != self.cursor.split || resume.seed != self.cursor.seed {
            return Err(DatasetError::InvalidCursor(format!(
                "it was made for split {} with seed {:?}",
                resume.split.as_str(),
                resume.seed
            )));
        }
        let total: u64 = self.groups.iter().map(|(_, rows)| *rows as u64).sum();
        if resume.position > total {
            return Err(DatasetError::InvalidCursor(format!("it is at row {} of a split of {total}", resume.position)));
        }
        let mut skip = resume.position;
        while let Some(&(_, rows)) = self.groups.get(self.next_group) {
            if skip < rows as u64 {
                break;
            }
            skip -= rows as u64;
            self.next_group += 1;
        }
        if skip > 0 {
            self.load()?;
            if let Some(loaded) = &mut self.loaded {
                loaded.next = skip as usize;
            }
        }
        self.cursor.position = resume.position;
        Ok(())
    }

    /// Makes the next row group the one read (reading it into memory, and
    /// dropping the last one, unless it is the same group); false at the
    /// end of the pass, which keeps the last group for a restart.
    fn load(&mut self) -> Result<bool, DatasetError> {
        let Some(&(group, _)) = self.groups.get(self.next_group) else {
            return Ok(false);
        };
        self.next_group += 1;
        let (batch, x, width) = match self.loaded.take() {
            Some(kept) if kept.group == group => (kept.batch, kept.x, kept.width),
            _ => self.read_group(group)?,
        };
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        if let Some(seed) = self.cursor.seed {
            shuffle(&mut order, &mut rng(seed ^ (group as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        self.loaded = Some(Loaded { group, batch, x, width, order, next: 0 });
        Ok(true)
    }

    /// Row group `group` from the file, with its features as fp32 rows.
    fn read_group(&self, group: usize) -> Result<(RecordBatch, Vec<f32>, usize), DatasetError> {
        let rows = self.groups.iter().find(|(g, _)| *g == group).map_or(0, |(_, rows)| *rows);
        let file = File::open(&self.path).map_err(|e| DatasetError::io("opening the stored dataset", e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
            .with_row_groups(vec![group])
            .with_batch_size(rows.max(1))
            .build()
            .map_err(DatasetError::storage)?;
        let mut batches = reader.collect::<Result<Vec<_>, _>>().map_err(DatasetError::storage)?;
        let batch = match batches.len() {
            1 => batches.remove(0),
            _ => return Err(DatasetError::storage("a row group did not read as one batch")),
        };
        let features = self
            .layout
            .features
            .iter()
            .map(|name| {
                let column = batch.column_by_name(name).ok_or_else(|| missing(name))?;
                column.as_primitive_opt::<Float64Type>().ok_or_else(|| wrong_type(name))
            })
            .collect::<Result<Vec<&Float64Array>, _>>()?;
        let width = features.len();
        let mut x = vec![0f32; batch.num_rows() * width];
        for (row, values) in x.chunks_exact_mut(width.max(1)).enumerate() {
            for (value, feature) in values.iter_mut().zip(&features) {
                *value = feature.values().get(row).map_or(0.0, |&v| v as f32);
            }
        }
        // The fp64 feature columns are not needed once they are rows: the
        // group in memory is no larger than it was read.
        let others: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| !self.layout.features.iter().any(|name| name == batch.schema_ref().field(i).name()))
            .collect();
        let batch = batch.project(&others).map_err(DatasetError::storage)?;
        Ok((batch, x, width))
    }

    /// The next batch, or `None` at the end of the pass.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, DatasetError> {
        let layout = self.layout.clone();
        let mut builder = TensorBuilder::new(&layout);
        while builder.rows < self.batch_size {
            let exhausted = self.loaded.as_ref().is_none_or(|l| l.next >= l.order.len());
            if exhausted && !self.load()? {
                break;
            }
            let Some(loaded) = &mut self.loaded else { break };
            let take = (self.batch_size - builder.rows).min(loaded.order.len() - loaded.next);
            builder.add(loaded, &loaded.order[loaded.next..loaded.next + take])?;
            loaded.next += take;
        }
        if builder.rows == 0 {
            return Ok(None);
        }
        self.cursor.position += builder.rows as u64;
        let rows = builder.rows;
        Ok(Some(Batch { tensors: builder.finish(), rows, cursor: self.cursor }))
    }
}

// A batch's tensor bytes are little-endian: on a little-endian host, the
// elements' own bytes.
const _: () = assert!(cfg!(target_endian = "little"), "the reader copies fp32 rows as their bytes");

/// Builds a batch's tensors row by row.
struct TensorBuilder<'a> {
    layout: &'a StoredLayout,
    rows: usize,
    x: Vec<u8>,
    y: Vec<u8>,
    tensors: Vec<Vec<u8>>,
}

impl<'a> TensorBuilder<'a> {
    fn new(layout: &'a StoredLayout) -> Self {
        Self { layout, rows: 0, x: Vec::new(), y: Vec::new(), tensors: vec![Vec::new(); layout.tensors.len()] }
    }

    fn add(&mut self, loaded: &Loaded, rows: &[u32]) -> Result<(), DatasetError> {
        let batch = &loaded.batch;
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| missing(name));
        let width = loaded.width;
        self.x.reserve(rows.len() * width * 4);
        for &row in rows {
            let start = row as usize * width;
            let values = loaded.x.get(start..start + width).ok_or_else(|| wrong_type("a feature"))?;
            self.x.extend_from_slice(bytemuck::cast_slice(values));
        }
        if let Some(label) = &self.layout.label {
            let values = column(&label.name)?;
            match label.kind {
                ColumnKind::Categorical => {
                    let values = values.as_primitive_opt::<Int64Type>().ok_or_else(|| wrong_type(&label.name))?;
                    for &row in rows {
                        self.y.extend_from_slice(&values.value(row as usize).to_le_bytes());
                    }
                }
                ColumnKind::Numeric => {
                    let values = values.as_primitive_opt::<Float64Type>().ok_or_else(|| wrong_type(&label.name))?;
                    for &row in rows {
                        self.y.extend_from_slice(&(values.value(row as usize) as f32).to_le_bytes());
                    }
                }
            }
        }
        for (spec, out) in self.layout.tensors.iter().zip(&mut self.tensors) {
            let list = column(&spec.name)?.as_fixed_size_list_opt().ok_or_else(|| wrong_type(&spec.name))?;
            let values = list.values();
            let size = usize::try_from(list.value_length()).unwrap_or(0);
            for &row in rows {
                let start = list.value_offset_at(row as usize);
                element_bytes(values.as_ref(), start, size, out)?;
            }
        }
        self.rows += rows.len();
        Ok(())
    }

    fn finish(self) -> Vec<NamedTensor> {
        let n = self.rows as u32;
        let mut tensors = Vec::new();
        if self.layout.tensors.is_empty() {
            let features = self.layout.features.len() as u32;
            tensors.push(named("x", vec![n, features], TensorType::Fp32, self.x));
        }
        for (spec, data) in self.layout.tensors.iter().zip(self.tensors) {
            let mut dimensions = vec![n];
            dimensions.extend(spec.shape.iter().map(|d| *d as u32));
            let ty = type_named(&spec.ty).unwrap_or(TensorType::U8);
            tensors.push(named(&spec.name, dimensions, ty, data));
        }
        if let Some(label) = &self.layout.label {
            let ty = if label.kind == ColumnKind::Categorical { TensorType::I64 } else { TensorType::Fp32 };
            tensors.push(named("y", vec![n], ty, self.y));
        }
        tensors
    }
}

fn named(name: &str, dimensions: Vec<u32>, ty: TensorType, data: Vec<u8>) -> NamedTensor {
    NamedTensor { name: name.to_owned(), tensor: Tensor { dimensions, ty, data } }
}

fn missing(name: &str) -> DatasetError {
    DatasetError::storage(format!("column `{name}` is missing"))
}

fn wrong_type(name: &str) -> DatasetError {
    DatasetError::storage(format!("column `{name}` does not have the type the layout says"))
}

/// Appends `len` elements from `start` of an Arrow array as little-endian bytes.
fn element_bytes(values: &dyn Array, start: usize, len: usize, out: &mut Vec<u8>) -> Result<(), DatasetError> {
    macro_rules! copy {
        ($ty:ty) => {{
            let array = values.as_primitive_opt::<$ty>().ok_or_else(|| wrong_type("a tensor"))?;
            let slice = array.values().get(start..start + len).ok_or_else(|| wrong_type("a tensor"))?;
            for value in slice {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }};
    }
    match values.data_type() {
        DataType::UInt8 => copy!(UInt8Type),
        DataType::UInt16 => copy!(UInt16Type),
        DataType::Float32 => copy!(Float32Type),
        DataType::Int32 => copy!(Int32Type),
        DataType::Float64 => copy!(Float64Type),
        DataType::Int64 => copy!(Int64Type),
        _ => return Err(wrong_type("a tensor")),
    }
    Ok(())
}

/// Rows `offset..offset + limit` of `split`, as JSON objects of stored column to value.
pub fn rows_page(path: &Path, split: Split, offset: u64, limit: u64) -> Result<RowsPage, DatasetError> {
    let layout = StoredLayout::read(path)?;
    let groups = layout.groups(split);
    let mut page = RowsPage { split, offset, total: groups.rows, rows: Vec::new() };
    let file = File::open(path).map_err(|e| DatasetError::io("opening the stored dataset", e))?;
    let metadata = ArrowReaderMetadata::load(&file, Default::default()).map_err(DatasetError::storage)?;
    let mut first_row = 0u64;
    for group in groups.first..groups.first + groups.count {
        if page.rows.len() as u64 >= limit {
            break;
        }
        let rows = metadata.metadata().row_groups().get(group).map_or(0, |g| g.num_rows()) as u64;
        if first_row + rows <= offset {
            first_row += rows;
            continue;
        }
        let file = file.try_clone().map_err(|e| DatasetError::io("opening the stored dataset", e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
            .with_row_groups(vec![group])
            .build()
            .map_err(DatasetError::storage)?;
        for batch in reader {
            let batch = batch.map_err(DatasetError::storage)?;
            for row in 0..batch.num_rows() {
                if first_row >= offset && (page.rows.len() as u64) < limit {
                    page.rows.push(row_json(&batch, row, &layout));
                }
                first_row += 1;
            }
        }
    }
    Ok(page)
}

/// One stored row as JSON: numbers, and lists of numbers for tensors (fp16 and bf16 widened).
fn row_json(batch: &RecordBatch, row: usize, layout: &StoredLayout) -> serde_json::Map<String, serde_json::Value> {
    let schema = batch.schema();
    let mut object = serde_json::Map::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let value = match column.data_type() {
            DataType::FixedSizeList(..) => {
                let ty = layout.tensors.iter().find(|t| t.name == *field.name()).and_then(|t| type_named(&t.ty));
                column
                    .as_fixed_size_list_opt()
                    .map(|list| {
                        let values = list.value(row);
                        (0..values.len()).map(|i| scalar(values.as_ref(), i, ty)).collect::<Vec<_>>().into()
                    })
                    .unwrap_or(serde_json::Value::Null)
            }
            _ => scalar(column.as_ref(), row, None),
        };
        object.insert(field.name().clone(), value);
    }
    object
}

fn scalar(array: &dyn Array, i: usize, ty: Option<TensorType>) -> serde_json::Value {
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number);
    match array.data_type() {
        DataType::Float64 => {
            array.as_primitive_opt::<Float64Type>().map_or(serde_json::Value::Null, |a| float(a.value(i)))
        }
        DataType::Float32 => {
            array.as_primitive_opt::<Float32Type>().map_or(serde_json::Value::Null, |a| float(f64::from(a.value(i))))
        }
        DataType::Int64 => array.as_primitive_opt::<Int64Type>().map_or(serde_json::Value::Null, |a| a.value(i).into()),
        DataType::Int32 => array.as_primitive_opt::<Int32Type>().map_or(serde_json::Value::Null, |a| a.value(i).into()),
        DataType::UInt8 => array.as_primitive_opt::<UInt8Type>().map_or(serde_json::Value::Null, |a| a.value(i).into()),
        DataType::UInt16 => array.as_primitive_opt::<UInt16Type>().map_or(serde_json::Value::Null, |a| {
            let bits = a.value(i);
            match ty {
                Some(TensorType::Fp16) => float(f64::from(half::f16::from_bits(bits))),
                Some(TensorType::Bf16) => float(f64::from(half::bf16::from_bits(bits))),
                _ => bits.into(),
            }
        }),
        _ => serde_json::Value::Null,
    }
}
