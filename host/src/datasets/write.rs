//! Writing the cleaned rows as one Parquet file: train, then validation,
//! then test, in row groups of at most [`ROW_GROUP_ROWS`] rows that never
//! hold two splits (the writer closes a row group at the end of each split
//! and records which row groups each split has). Batches are built (filled,
//! recoded, scaled) on the caller's thread while another encodes and
//! compresses them.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, mpsc};

use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt8Type, UInt16Type};
use arrow_array::{ArrayRef, FixedSizeListArray, Float64Array, Int64Array, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::api::datasets::{ColumnKind, ColumnRole, DatasetReport, Normalization, Split, StoredColumn};
use crate::engine::TensorType;

use super::ROW_GROUP_ROWS;
use super::clean::{Cleaned, tensor_bytes};
use super::error::DatasetError;
use super::layout::{LAYOUT_KEY, SplitGroups, StoredLabel, StoredLayout};
use super::preprocess::{element_size, type_name};
use super::table::TensorColumn;

/// One column of the stored file, and where its values come from.
enum Out {
    Numeric { column: usize, normalization: Option<Normalization> },
    OneHot { column: usize, code: u32 },
    Label { column: usize, kind: ColumnKind },
    Tensor { index: usize },
}

/// Rows per batch handed to the encoder: small, so that one-hot columns
/// (one fp64 column per category) do not multiply the memory a batch takes.
const BATCH_ROWS: usize = 8192;

/// What the encoder thread is sent.
enum Message {
    Batch(RecordBatch),
    /// The split's last rows were sent: its last row group closes.
    EndOfSplit,
}

/// Writes `cleaned` to `output` and records its columns in the report.
pub(crate) fn write(cleaned: &Cleaned, report: &mut DatasetReport, output: &Path) -> Result<(), DatasetError> {
    let (outs, fields, stored, mut layout) = plan(cleaned)?;
    report.stored_columns = stored;
    let schema = Arc::new(Schema::new(fields));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_data_page_size_limit(64 * 1024)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let file = File::create(output).map_err(|e| DatasetError::io("creating the dataset file", e))?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(DatasetError::storage)?;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Message>(1);
        let encoder = scope.spawn(move || -> Result<(), DatasetError> {
            let mut first = 0;
            let mut splits = Split::ALL.into_iter().zip(&cleaned.splits);
            for message in receiver {
                match message {
                    Message::Batch(batch) => writer.write(&batch).map_err(DatasetError::storage)?,
                    Message::EndOfSplit => {
                        writer.flush().map_err(DatasetError::storage)?;
                        let written = writer.flushed_row_groups().len();
                        if let Some((split, rows)) = splits.next() {
                            let groups = SplitGroups { first, count: written - first, rows: rows.len() as u64 };
                            layout.splits.insert(split, groups);
                        }
                        first = written;
                    }
                }
            }
            let layout = serde_json::to_string(&layout).map_err(DatasetError::storage)?;
            writer.append_key_value_metadata(KeyValue::new(LAYOUT_KEY.to_owned(), layout));
            writer.close().map_err(DatasetError::storage)?;
            Ok(())
        });
        'splits: for rows in &cleaned.splits {
            for chunk in rows.chunks(BATCH_ROWS) {
                if sender.send(Message::Batch(batch(cleaned, &outs, &schema, chunk)?)).is_err() {
                    break 'splits;
                }
            }
            if sender.send(Message::EndOfSplit).is_err() {
                break;
            }
        }
        drop(sender);
        encoder.join().map_err(|_| DatasetError::storage("the Parquet encoder thread panicked"))?
    })
}

type Plan = (Vec<Out>, Vec<Field>, Vec<StoredColumn>, StoredLayout);

/// The stored columns: features (numeric, then each category of a categorical one), tensors, the label.
fn plan(cleaned: &Cleaned) -> Result<Plan, DatasetError> {
    let (mut outs, mut fields, mut stored, mut features) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut label = None;
    let scalar = |name: &str, ty: &str| StoredColumn { name: name.to_owned(), ty: ty.to_owned(), shape: Vec::new() };
    for (column, table_column) in cleaned.table.columns.iter().enumerate() {
        let name = &table_column.spec.name;
        match (table_column.spec.role, table_column.spec.kind) {
            (ColumnRole::Feature, ColumnKind::Numeric) => {
                outs.push(Out::Numeric { column, normalization: cleaned.normalization[column] });
                fields.push(Field::new(name, DataType::Float64, false));
                stored.push(scalar(name, "fp64"));
                features.push(name.clone());
            }
            (ColumnRole::Feature, ColumnKind::Categorical) => {
                let names = cleaned.categories[column].as_ref().map(|c| c.names.clone()).unwrap_or_default();
                for (code, category) in names.iter().enumerate() {
                    let one_hot = format!("{name}={category}");
                    outs.push(Out::OneHot { column, code: code as u32 });
                    fields.push(Field::new(&one_hot, DataType::Float64, false));
                    stored.push(scalar(&one_hot, "fp64"));
                    features.push(one_hot);
                }
            }
            (ColumnRole::Label, kind) => label = Some((column, kind, name.clone())),
        }
    }
    let mut tensors = Vec::new();
    for (index, tensor) in cleaned.table.tensors.iter().enumerate() {
        let size = i32::try_from(tensor.dimensions.iter().map(|d| *d as usize).product::<usize>())
            .map_err(|_| DatasetError::storage(format!("tensor `{}` is too large to store", tensor.name)))?;
        let item = Arc::new(Field::new("item", arrow_type(tensor.ty), false));
        outs.push(Out::Tensor { index });
        fields.push(Field::new(&tensor.name, DataType::FixedSizeList(item, size), false));
        let column = StoredColumn {
            name: tensor.name.clone(),
            ty: type_name(tensor.ty).to_owned(),
            shape: tensor.dimensions.iter().map(|d| u64::from(*d)).collect(),
        };
        stored.push(column.clone());
        tensors.push(column);
    }
    let layout_label = label.map(|(column, kind, name)| {
        let (ty, type_name) = match kind {
            ColumnKind::Categorical => (DataType::Int64, "i64"),
            ColumnKind::Numeric => (DataType::Float64, "fp64"),
        };
        outs.push(Out::Label { column, kind });
        fields.push(Field::new(&name, ty, false));
        stored.push(scalar(&name, type_name));
        StoredLabel { name, kind }
    });
    Ok((outs, fields, stored, layout(features, layout_label, tensors)))
}

/// The layout but for the splits' row groups, which the encoder fills in as it writes them.
fn layout(features: Vec<String>, label: Option<StoredLabel>, tensors: Vec<StoredColumn>) -> StoredLayout {
    StoredLayout { splits: std::collections::BTreeMap::new(), features, label, tensors }
}

/// The Arrow type a tensor's elements are stored as (fp16 and bf16 as their raw 16 bits).
pub(crate) fn arrow_type(ty: TensorType) -> DataType {
    match ty {
        TensorType::U8 => DataType::UInt8,
        TensorType::Fp16 | TensorType::Bf16 => DataType::UInt16,
        TensorType::Fp32 => DataType::Float32,
        TensorType::I32 => DataType::Int32,
        TensorType::Fp64 => DataType::Float64,
        TensorType::I64 => DataType::Int64,
    }
}

fn batch(cleaned: &Cleaned, outs: &[Out], schema: &Arc<Schema>, rows: &[u32]) -> Result<RecordBatch, DatasetError> {
    let columns = outs
        .iter()
        .map(|out| -> Result<ArrayRef, DatasetError> {
            Ok(match *out {
                Out::Numeric { column, normalization } => {
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|&row| {
                        let x = cleaned.number(column, row);
                        normalization.map_or(x, |n| (x - n.offset) / n.scale)
                    })))
                }
                Out::OneHot { column, code } => Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|&row| if cleaned.code(column, row) == code { 1.0 } else { 0.0 }),
                )),
                Out::Label { column, kind: ColumnKind::Categorical } => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|&row| i64::from(cleaned.code(column, row)))))
                }
                Out::Label { column, kind: ColumnKind::Numeric } => {
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|&row| cleaned.number(column, row))))
                }
                Out::Tensor { index } => tensor_array(&cleaned.table.tensors[index], rows)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(DatasetError::storage)
}

fn tensor_array(tensor: &TensorColumn, rows: &[u32]) -> Result<ArrayRef, DatasetError> {
    let mut bytes = Vec::new();
    for &row in rows {
        bytes.extend_from_slice(tensor_bytes(tensor, row));
    }
    let values = elements(tensor.ty, &bytes);
    let size = tensor.dimensions.iter().map(|d| *d as usize).product::<usize>();
    let item = Arc::new(Field::new("item", arrow_type(tensor.ty), false));
    let list = FixedSizeListArray::try_new(item, size as i32, values, None).map_err(DatasetError::storage)?;
    Ok(Arc::new(list))
}

/// Little-endian tensor bytes as an Arrow array of the element type.
pub(crate) fn elements(ty: TensorType, bytes: &[u8]) -> ArrayRef {
    fn array<T: arrow_array::ArrowPrimitiveType, const N: usize>(
        bytes: &[u8],
        from: fn([u8; N]) -> T::Native,
    ) -> ArrayRef {
        let values = bytes.chunks_exact(N).map(|c| from(<[u8; N]>::try_from(c).unwrap_or([0; N])));
        Arc::new(PrimitiveArray::<T>::from_iter_values(values))
    }
    debug_assert_eq!(bytes.len() % element_size(ty), 0);
    match ty {
        TensorType::U8 => array::<UInt8Type, 1>(bytes, u8::from_le_bytes),
        TensorType::Fp16 | TensorType::Bf16 => array::<UInt16Type, 2>(bytes, u16::from_le_bytes),
        TensorType::Fp32 => array::<Float32Type, 4>(bytes, f32::from_le_bytes),
        TensorType::I32 => array::<Int32Type, 4>(bytes, i32::from_le_bytes),
        TensorType::Fp64 => array::<Float64Type, 8>(bytes, f64::from_le_bytes),
        TensorType::I64 => array::<Int64Type, 8>(bytes, i64::from_le_bytes),
    }
}
