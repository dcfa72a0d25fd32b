//! The preprocessor hook: every record goes through a tenant's function,
//! in parallel across threads, and its output tensors become fixed-shape
//! columns. A failure, a trap or a shape other than the first record's is a
//! bad row of that record.

use crate::api::datasets::{BadRowKind, PreprocessReport};
use crate::engine::{NamedTensor, TensorType};

use super::error::DatasetError;
use super::table::{Cell, Log, Place, Table, TensorColumn};

/// Records handed to the preprocessor per round (split across the threads).
const ROUND: usize = 256;

/// What runs every record of an upload through a preprocessor function.
/// The server implements it on the invoker (under the function's limits);
/// calls come from several threads at once.
pub trait Preprocessor: Sync {
    /// The tensors for one record: `text/csv` (the header row and the record)
    /// or `application/json` (a JSON Lines line, a Parquet row as an object).
    /// An `Err` is the reason the record is bad (a failure or a trap).
    fn preprocess(&self, content_type: &str, data: &[u8]) -> Result<Vec<NamedTensor>, String>;
}

/// A record waiting for its round.
struct Waiting {
    place: Place,
    cells: Vec<OwnedCell>,
    payload: Vec<u8>,
}

enum OwnedCell {
    Missing,
    Text(String),
    Number(f64),
}

/// Records collected into rounds, run in parallel, and added in file order.
pub(crate) struct Pending<'p> {
    preprocessor: &'p dyn Preprocessor,
    content_type: &'static str,
    waiting: Vec<Waiting>,
    report: PreprocessReport,
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("waiting", &self.waiting.len()).finish()
    }
}

impl<'p> Pending<'p> {
    pub(crate) fn new(preprocessor: &'p dyn Preprocessor, content_type: &'static str, function: String) -> Self {
        let report = PreprocessReport { function, records: 0, bytes_in: 0, bytes_out: 0 };
        Self { preprocessor, content_type, waiting: Vec::with_capacity(ROUND), report }
    }

    /// Queues a record; a full round runs.
    pub(crate) fn add(
        &mut self,
        place: Place,
        cells: &[Cell<'_>],
        payload: Vec<u8>,
        table: &mut Table,
        log: &mut Log,
    ) -> Result<(), DatasetError> {
        let cells = cells
            .iter()
            .map(|cell| match *cell {
                Cell::Missing => OwnedCell::Missing,
                Cell::Text(text) => OwnedCell::Text(text.to_owned()),
                Cell::Number(x) => OwnedCell::Number(x),
            })
            .collect();
        self.waiting.push(Waiting { place, cells, payload });
        if self.waiting.len() >= ROUND {
            self.run(table, log)?;
        }
        Ok(())
    }

    /// Runs what is left and answers the metering inputs.
    pub(crate) fn finish(mut self, table: &mut Table, log: &mut Log) -> Result<PreprocessReport, DatasetError> {
        self.run(table, log)?;
        Ok(self.report)
    }

    fn run(&mut self, table: &mut Table, log: &mut Log) -> Result<(), DatasetError> {
        let waiting = std::mem::take(&mut self.waiting);
        let outputs = self.outputs(&waiting)?;
        for (record, output) in waiting.into_iter().zip(outputs) {
            self.report.records += 1;
            self.report.bytes_in += record.payload.len() as u64;
            let tensors = match output {
                Ok(tensors) => tensors,
                Err(reason) => {
                    log.push_bad(
                        record.place,
                        BadRowKind::PreprocessFailed,
                        format!("the preprocessor failed: {reason}"),
                    );
                    continue;
                }
            };
            self.report.bytes_out += tensors.iter().map(|t| t.tensor.data.len() as u64).sum::<u64>();
            if let Err(reason) = check_shape(table, &tensors) {
                log.push_bad(record.place, BadRowKind::ShapeMismatch, reason);
                continue;
            }
            let cells: Vec<Cell<'_>> = record
                .cells
                .iter()
                .map(|cell| match cell {
                    OwnedCell::Missing => Cell::Missing,
                    OwnedCell::Text(text) => Cell::Text(text),
                    OwnedCell::Number(x) => Cell::Number(*x),
                })
                .collect();
            let before = table.rows;
            log.push(table, record.place, &cells)?;
            if table.rows > before {
                for (column, tensor) in table.tensors.iter_mut().zip(tensors) {
                    column.data.extend_from_slice(&tensor.tensor.data);
                }
            }
        }
        Ok(())
    }

    /// The preprocessor's answers for a round, in order, computed on every core.
    fn outputs(&self, waiting: &[Waiting]) -> Result<Vec<Result<Vec<NamedTensor>, String>>, DatasetError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(waiting.len().max(1));
        let per_thread = waiting.len().div_ceil(threads).max(1);
        let (preprocessor, content_type) = (self.preprocessor, self.content_type);
        std::thread::scope(|scope| {
            let handles: Vec<_> = waiting
                .chunks(per_thread)
                .map(|records| {
                    scope.spawn(move || {
                        records.iter().map(|r| preprocessor.preprocess(content_type, &r.payload)).collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut outputs = Vec::with_capacity(waiting.len());
            for handle in handles {
                let answers = handle.join().map_err(|_| DatasetError::storage("a preprocessing thread panicked"))?;
                outputs.extend(answers);
            }
            Ok(outputs)
        })
    }
}

/// Bytes per element of a tensor type.
pub(crate) fn element_size(ty: TensorType) -> usize {
    match ty {
        TensorType::U8 => 1,
        TensorType::Fp16 | TensorType::Bf16 => 2,
        TensorType::Fp32 | TensorType::I32 => 4,
        TensorType::Fp64 | TensorType::I64 => 8,
    }
}

/// The name of a tensor type, as the report and the stored file's metadata write it.
pub(crate) fn type_name(ty: TensorType) -> &'static str {
    match ty {
        TensorType::U8 => "u8",
        TensorType::Fp16 => "fp16",
        TensorType::Bf16 => "bf16",
        TensorType::Fp32 => "fp32",
        TensorType::I32 => "i32",
        TensorType::Fp64 => "fp64",
        TensorType::I64 => "i64",
    }
}

/// The tensor type named `name`.
pub(crate) fn type_named(name: &str) -> Option<TensorType> {
    [
        TensorType::U8,
        TensorType::Fp16,
        TensorType::Bf16,
        TensorType::Fp32,
        TensorType::I32,
        TensorType::Fp64,
        TensorType::I64,
    ]
    .into_iter()
    .find(|ty| type_name(*ty) == name)
}

fn shape_text(tensors: &[(String, TensorType, Vec<u32>)]) -> String {
    tensors.iter().map(|(name, ty, dims)| format!("{name} {} {dims:?}", type_name(*ty))).collect::<Vec<_>>().join(", ")
}

/// Checks a record's tensors against the first record's (which set the columns).
fn check_shape(table: &mut Table, tensors: &[NamedTensor]) -> Result<(), String> {
    for tensor in tensors {
        let elements = tensor.tensor.dimensions.iter().map(|d| *d as usize).product::<usize>();
        if elements * element_size(tensor.tensor.ty) != tensor.tensor.data.len() {
            return Err(format!(
                "tensor `{}` has {} bytes, which is not its shape {:?}",
                tensor.name,
                tensor.tensor.data.len(),
                tensor.tensor.dimensions
            ));
        }
    }
    let got: Vec<(String, TensorType, Vec<u32>)> =
        tensors.iter().map(|t| (t.name.clone(), t.tensor.ty, t.tensor.dimensions.clone())).collect();
    if table.tensors.is_empty() && table.rows == 0 {
        if got.is_empty() {
            return Err("the preprocessor answered no tensor".to_owned());
        }
        table.tensors = got
            .into_iter()
            .map(|(name, ty, dimensions)| TensorColumn { name, ty, dimensions, data: Vec::new() })
            .collect();
        return Ok(());
    }
    let want: Vec<(String, TensorType, Vec<u32>)> =
        table.tensors.iter().map(|t| (t.name.clone(), t.ty, t.dimensions.clone())).collect();
    if got == want {
        Ok(())
    } else {
        Err(format!("the preprocessor answered {} where the first record had {}", shape_text(&got), shape_text(&want)))
    }
}
