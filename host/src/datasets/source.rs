//! Reading an upload record by record into a [`Table`]: CSV through the
//! `csv` crate (parsed on a thread of its own, converted on the caller's),
//! JSON Lines through `serde_json` line by line, Parquet through Arrow.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::mpsc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::api::datasets::{BadRowKind, DatasetOptions, PreprocessReport};

use super::Format;
use super::error::DatasetError;
use super::preprocess::{Pending, Preprocessor};
use super::table::{Cell, Log, Place, Table, shorten};

/// Records per chunk handed from the CSV parsing thread to the converting one.
const CSV_CHUNK: usize = 2048;

/// What reading an upload gives.
#[derive(Debug)]
pub(crate) struct Ingested {
    pub table: Table,
    pub log: Log,
    pub preprocess: Option<PreprocessReport>,
}

/// Where each record goes: straight into the table, or through the
/// preprocessor first.
struct Sink<'p> {
    table: Table,
    log: Log,
    pending: Option<Pending<'p>>,
}

impl<'p> Sink<'p> {
    fn new(
        header: &[String],
        source_types: &[String],
        options: &DatasetOptions,
        preprocessor: Option<(&'p dyn Preprocessor, &'static str)>,
        log: Log,
    ) -> Result<Self, DatasetError> {
        let table = Table::new(header, source_types, options, preprocessor.is_some())?;
        let pending = preprocessor.map(|(preprocessor, content_type)| {
            Pending::new(preprocessor, content_type, options.preprocess.clone().unwrap_or_default())
        });
        Ok(Self { table, log, pending })
    }

    fn preprocessing(&self) -> bool {
        self.pending.is_some()
    }

    /// A record read whole: its selected cells, and (when preprocessing) the record as the preprocessor takes it.
    fn record(&mut self, place: Place, cells: &[Cell<'_>], payload: Option<Vec<u8>>) -> Result<(), DatasetError> {
        match (&mut self.pending, payload) {
            (Some(pending), Some(payload)) => pending.add(place, cells, payload, &mut self.table, &mut self.log),
            _ => self.log.push(&mut self.table, place, cells),
        }
    }

    fn finish(mut self) -> Result<Ingested, DatasetError> {
        let preprocess = match self.pending.take() {
            Some(pending) => Some(pending.finish(&mut self.table, &mut self.log)?),
            None => None,
        };
        Ok(Ingested { table: self.table, log: self.log, preprocess })
    }
}

/// Reads `input` in `format` into a table of its good rows and a log of its bad ones.
pub(crate) fn ingest(
    input: &Path,
    format: Format,
    options: &DatasetOptions,
    preprocessor: Option<&dyn Preprocessor>,
) -> Result<Ingested, DatasetError> {
    match format {
        Format::Csv => csv(input, options, preprocessor.map(|p| (p, "text/csv"))),
        Format::Jsonl => jsonl(input, options, preprocessor.map(|p| (p, "application/json"))),
        Format::Parquet => parquet(input, options, preprocessor.map(|p| (p, "application/json"))),
    }
}

fn open(input: &Path) -> Result<File, DatasetError> {
    File::open(input).map_err(|e| DatasetError::io("opening the upload", e))
}

/// One item from the CSV parsing thread.
enum Item {
    Record(csv::ByteRecord),
    Bad(Place, BadRowKind, String),
}

fn csv(
    input: &Path,
    options: &DatasetOptions,
    preprocessor: Option<(&dyn Preprocessor, &'static str)>,
) -> Result<Ingested, DatasetError> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).buffer_capacity(1 << 20).from_reader(open(input)?);
    let header_bytes = reader.byte_headers().map_err(csv_error)?.clone();
    let header = header_bytes
        .iter()
        .map(|name| std::str::from_utf8(name).map(str::to_owned))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|_| DatasetError::HeaderNotUtf8)?;
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(DatasetError::NoColumns("header row"));
    }
    let types = vec!["text".to_owned(); header.len()];
    let mut sink = Sink::new(&header, &types, options, preprocessor, Log::default())?;
    let inputs = sink.table.inputs();
    let raw = open(input)?;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Result<Vec<Item>, DatasetError>>(4);
        let columns = header.len();
        scope.spawn(move || parse_csv(reader, raw, columns, &sender));
        for chunk in receiver {
            for item in chunk? {
                let record = match item {
                    Item::Bad(place, kind, reason) => {
                        sink.log.push_bad(place, kind, reason);
                        continue;
                    }
                    Item::Record(record) => record,
                };
                let place = Place::Line(record.position().map_or(0, csv::Position::line));
                if let Err(column) = check_utf8(&record) {
                    let name = header.get(column).map_or("?", String::as_str);
                    let reason = format!("column `{name}` holds bytes that are not UTF-8; save the file as UTF-8");
                    sink.log.push_bad(place, BadRowKind::InvalidUtf8, reason);
                    continue;
                }
                let mut cells = Vec::with_capacity(inputs.len());
                for &i in &inputs {
                    let text = record.get(i).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default();
                    cells.push(Cell::from_text(text));
                }
                let payload = if sink.preprocessing() { Some(csv_payload(&header_bytes, &record)?) } else { None };
                sink.record(place, &cells, payload)?;
            }
        }
        Ok::<(), DatasetError>(())
    })?;
    sink.finish()
}

fn csv_error(error: csv::Error) -> DatasetError {
    match error.into_kind() {
        csv::ErrorKind::Io(error) => DatasetError::io("reading the upload", error),
        other => DatasetError::Storage(format!("the CSV reader failed: {other:?}")),
    }
}

/// The first column of `record` that is not UTF-8, if any.
fn check_utf8(record: &csv::ByteRecord) -> Result<(), usize> {
    if std::str::from_utf8(record.as_slice()).is_ok() {
        return Ok(());
    }
    match record.iter().position(|field| std::str::from_utf8(field).is_err()) {
        Some(column) => Err(column),
        None => Ok(()),
    }
}

/// A CSV record as the preprocessor takes it: the header row and the record, RFC 4180 quoted.
fn csv_payload(header: &csv::ByteRecord, record: &csv::ByteRecord) -> Result<Vec<u8>, DatasetError> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_byte_record(header).map_err(csv_error)?;
    writer.write_byte_record(record).map_err(csv_error)?;
    writer.into_inner().map_err(|e| DatasetError::Storage(format!("writing a CSV record: {e}")))
}

/// The parsing thread: records in chunks, ragged ones already told apart
/// from broken quoting by a look at their raw bytes.
fn parse_csv(
    mut reader: csv::Reader<File>,
    mut raw: File,
    columns: usize,
    sender: &mpsc::SyncSender<Result<Vec<Item>, DatasetError>>,
) {
    let mut chunk = Vec::with_capacity(CSV_CHUNK);
    loop {
        let mut record = csv::ByteRecord::new();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                let _ = sender.send(Err(csv_error(error)));
                return;
            }
        }
        if record.len() == columns {
            chunk.push(Item::Record(record));
        } else {
            let start = record.position().map_or(0, csv::Position::byte);
            let line = record.position().map_or(0, csv::Position::line);
            let end = reader.position().byte();
            chunk.push(ragged(&mut raw, start, end, line, record.len(), columns));
        }
        if chunk.len() == CSV_CHUNK
            && sender.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CSV_CHUNK)))).is_err()
        {
            return;
        }
    }
    let _ = sender.send(Ok(chunk));
}

/// A record with the wrong number of fields: broken quoting if its raw bytes
/// hold a quote (an unclosed quote swallows what follows; a quote inside a
/// field splits it), else ragged.
fn ragged(raw: &mut File, start: u64, end: u64, line: u64, fields: usize, columns: usize) -> Item {
    let mut bytes = Vec::new();
    let len = end.saturating_sub(start).min(1 << 16);
    let quoted = raw.seek(SeekFrom::Start(start)).is_ok()
        && raw.by_ref().take(len).read_to_end(&mut bytes).is_ok()
        && bytes.contains(&b'"');
    if quoted {
        let reason = format!(
            "a quote is not closed, or a field goes on after its closing quote ({fields} fields where the header \
             has {columns}); quote whole fields and double quotes inside them"
        );
        Item::Bad(Place::Line(line), BadRowKind::BrokenQuoting, reason)
    } else {
        let reason = format!("{fields} fields where the header has {columns}");
        Item::Bad(Place::Line(line), BadRowKind::Ragged, reason)
    }
}

/// A JSON object's entries in the order written (`serde_json::Map` sorts them).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

fn jsonl(
    input: &Path,
    options: &DatasetOptions,
    preprocessor: Option<(&dyn Preprocessor, &'static str)>,
) -> Result<Ingested, DatasetError> {
    let mut reader = BufReader::with_capacity(1 << 20, open(input)?);
    let mut line = Vec::new();
    let mut number = 0u64;
    let mut log = Log::default();
    let mut sink: Option<Sink<'_>> = None;
    let mut header: Vec<String> = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| DatasetError::io("reading the upload", e))? == 0 {
            break;
        }
        number += 1;
        let place = Place::Line(number);
        let bytes = if number == 1 { line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line) } else { &line[..] };
        let Ok(text) = std::str::from_utf8(bytes) else {
            sink.as_mut().map_or(&mut log, |s| &mut s.log).push_bad(
                place,
                BadRowKind::InvalidUtf8,
                "the line holds bytes that are not UTF-8; save the file as UTF-8".into(),
            );
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let entries = match serde_json::from_str::<Entries>(text) {
            Ok(entries) => entries.0,
            Err(error) => {
                let reason = format!("not a JSON object: {error}");
                sink.as_mut().map_or(&mut log, |s| &mut s.log).push_bad(place, BadRowKind::InvalidRecord, reason);
                continue;
            }
        };
        if sink.is_none() {
            header = entries.iter().map(|(key, _)| key.clone()).collect();
            let types = entries.iter().map(|(_, value)| json_type(value).to_owned()).collect::<Vec<_>>();
            sink = Some(Sink::new(&header, &types, options, preprocessor, std::mem::take(&mut log))?);
        }
        let Some(sink) = sink.as_mut() else { continue };
        match json_cells(&header, &sink.table.inputs(), &entries) {
            Ok(cells) => {
                let payload = sink.preprocessing().then(|| text.trim_end().as_bytes().to_vec());
                sink.record(place, &cells, payload)?;
            }
            Err((kind, reason)) => sink.log.push_bad(place, kind, reason),
        }
    }
    match sink {
        Some(sink) => sink.finish(),
        None if log.read > 0 => {
            Err(DatasetError::NoColumns("valid JSON object to take the columns from (every line is bad)"))
        }
        None => Err(DatasetError::NoColumns("record")),
    }
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The selected cells of a JSON object; a key the first record lacks is ragged.
fn json_cells<'a>(
    header: &[String],
    inputs: &[usize],
    entries: &'a [(String, serde_json::Value)],
) -> Result<Vec<Cell<'a>>, (BadRowKind, String)> {
    if let Some((key, _)) = entries.iter().find(|(key, _)| !header.contains(key)) {
        return Err((BadRowKind::Ragged, format!("key `{}` is not in the first record", shorten(key))));
    }
    let mut cells = Vec::with_capacity(inputs.len());
    for &input in inputs {
        let name = &header[input];
        let cell = match entries.iter().find(|(key, _)| key == name).map(|(_, value)| value) {
            None | Some(serde_json::Value::Null) => Cell::Missing,
            Some(serde_json::Value::Number(n)) => n.as_f64().map_or(Cell::Missing, Cell::Number),
            Some(serde_json::Value::Bool(b)) => Cell::Number(if *b { 1.0 } else { 0.0 }),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => Cell::Missing,
            Some(serde_json::Value::String(s)) => Cell::Text(s),
            Some(other) => {
                return Err((
                    BadRowKind::InvalidRecord,
                    format!(
                        "key `{name}` holds {} {}; only numbers, strings, booleans and null",
                        article(other),
                        json_type(other)
                    ),
                ));
            }
        };
        cells.push(cell);
    }
    Ok(cells)
}

fn article(value: &serde_json::Value) -> &'static str {
    if matches!(value, serde_json::Value::Array(_) | serde_json::Value::Object(_)) { "an" } else { "a" }
}

fn parquet(
    input: &Path,
    options: &DatasetOptions,
    preprocessor: Option<(&dyn Preprocessor, &'static str)>,
) -> Result<Ingested, DatasetError> {
    let invalid = |e: parquet::errors::ParquetError| DatasetError::InvalidParquet(e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(input)?).map_err(invalid)?;
    let schema = builder.schema().clone();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    if header.is_empty() {
        return Err(DatasetError::NoColumns("column"));
    }
    let types: Vec<String> = schema.fields().iter().map(|f| f.data_type().to_string().to_lowercase()).collect();
    let mut sink = Sink::new(&header, &types, options, preprocessor, Log::default())?;
    // Only the selected columns are decoded, unless the preprocessor takes whole rows.
    let wanted: Vec<usize> = if sink.preprocessing() { (0..header.len()).collect() } else { sink.table.inputs() };
    let mut projected = wanted.clone();
    projected.sort_unstable();
    projected.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), projected.iter().copied());
    let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(invalid)?;
    let inputs = sink.table.inputs();
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| DatasetError::InvalidParquet(e.to_string()))?;
        let selected = batch_accessors(&batch, &projected, &header, &inputs)?;
        let whole =
            if sink.preprocessing() { batch_accessors(&batch, &projected, &header, &wanted)? } else { Vec::new() };
        for i in 0..batch.num_rows() {
            let cells: Vec<Cell<'_>> = selected.iter().map(|access| access(i)).collect();
            let payload = if sink.preprocessing() { Some(row_json(&header, &whole, i)?) } else { None };
            sink.record(Place::Row(row), &cells, payload)?;
            row += 1;
        }
    }
    sink.finish()
}

/// Accessors of the upload's columns `inputs` in a batch of the `projected` ones (in file order).
fn batch_accessors<'a>(
    batch: &'a arrow_array::RecordBatch,
    projected: &[usize],
    header: &[String],
    inputs: &[usize],
) -> Result<Vec<Accessor<'a>>, DatasetError> {
    inputs
        .iter()
        .map(|&input| {
            let index = projected.binary_search(&input).map_err(|_| DatasetError::storage("a column was not read"))?;
            accessor(batch.column(index).as_ref(), &header[input])
        })
        .collect()
}

/// A Parquet row as a JSON object, for the preprocessor.
fn row_json(header: &[String], columns: &[Accessor<'_>], i: usize) -> Result<Vec<u8>, DatasetError> {
    let mut object = serde_json::Map::new();
    for (name, access) in header.iter().zip(columns) {
        let value = match access(i) {
            Cell::Missing => serde_json::Value::Null,
            Cell::Number(x) => {
                serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Cell::Text(text) => serde_json::Value::String(text.to_owned()),
        };
        object.insert(name.clone(), value);
    }
    serde_json::to_vec(&object).map_err(DatasetError::storage)
}

/// The cell at a row of one Arrow column.
type Accessor<'a> = Box<dyn Fn(usize) -> Cell<'a> + 'a>;

fn primitive<'a, T: ArrowPrimitiveType>(
    array: &'a dyn Array,
    column: &str,
) -> Result<&'a PrimitiveArray<T>, DatasetError> {
    array
        .as_primitive_opt::<T>()
        .ok_or_else(|| DatasetError::InvalidParquet(format!("column `{column}` does not hold the type it declares")))
}

macro_rules! numeric {
    ($array:expr, $column:expr, $ty:ty) => {{
        let values = primitive::<$ty>($array, $column)?;
        let access: Accessor<'_> =
            Box::new(move |i| if values.is_null(i) { Cell::Missing } else { Cell::Number(values.value(i) as f64) });
        access
    }};
}

/// How to read cells of an Arrow column: numbers, booleans and strings (plain or dictionary-encoded).
fn accessor<'a>(array: &'a dyn Array, column: &str) -> Result<Accessor<'a>, DatasetError> {
    let unsupported = || {
        DatasetError::InvalidParquet(format!(
            "column `{column}` has type {}; datasets take numbers, booleans and strings (leave it out with features=)",
            array.data_type()
        ))
    };
    let access: Accessor<'a> = match array.data_type() {
        DataType::Null => Box::new(|_| Cell::Missing),
        DataType::Float64 => numeric!(array, column, Float64Type),
        DataType::Float32 => numeric!(array, column, Float32Type),
        DataType::Int64 => numeric!(array, column, Int64Type),
        DataType::Int32 => numeric!(array, column, Int32Type),
        DataType::Int16 => numeric!(array, column, Int16Type),
        DataType::Int8 => numeric!(array, column, Int8Type),
        DataType::UInt64 => numeric!(array, column, UInt64Type),
        DataType::UInt32 => numeric!(array, column, UInt32Type),
        DataType::UInt16 => numeric!(array, column, UInt16Type),
        DataType::UInt8 => numeric!(array, column, UInt8Type),
        DataType::Boolean => {
            let values = array.as_boolean_opt().ok_or_else(unsupported)?;
            Box::new(move |i| match values.is_null(i) {
                true => Cell::Missing,
                false => Cell::Number(if values.value(i) { 1.0 } else { 0.0 }),
            })
        }
        DataType::Utf8 => {
            let values = array.as_string_opt::<i32>().ok_or_else(unsupported)?;
            Box::new(move |i| if values.is_null(i) { Cell::Missing } else { text_cell(values.value(i)) })
        }
        DataType::LargeUtf8 => {
            let values = array.as_string_opt::<i64>().ok_or_else(unsupported)?;
            Box::new(move |i| if values.is_null(i) { Cell::Missing } else { text_cell(values.value(i)) })
        }
        DataType::Utf8View => {
            let values = array.as_string_view_opt().ok_or_else(unsupported)?;
            Box::new(move |i| if values.is_null(i) { Cell::Missing } else { text_cell(values.value(i)) })
        }
        DataType::Dictionary(_, value_type) if **value_type == DataType::Utf8 => {
            let dictionary = array.as_any_dictionary_opt().ok_or_else(unsupported)?;
            let keys = dictionary.normalized_keys();
            let values = dictionary.values().as_string_opt::<i32>().ok_or_else(unsupported)?;
            Box::new(move |i| match (array.is_null(i), keys.get(i)) {
                (false, Some(&key)) if key < values.len() && !values.is_null(key) => text_cell(values.value(key)),
                _ => Cell::Missing,
            })
        }
        _ => return Err(unsupported()),
    };
    Ok(access)
}

fn text_cell(text: &str) -> Cell<'_> {
    if text.trim().is_empty() { Cell::Missing } else { Cell::Text(text) }
}
