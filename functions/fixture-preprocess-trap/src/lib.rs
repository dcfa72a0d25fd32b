//! A preprocessor that traps (a WebAssembly `unreachable`, by aborting) on every record
//! whose bytes contain `trap`, and otherwise answers `x`, fp32 [1]: the
//! record's length; a record containing `wide` gets shape [2] instead, which
//! differs from the first record's. Dataset uploads must report the trapped
//! and the misshapen records as bad rows, with their lines, and keep the
//! others.

use muon_sdk::{NamedTensor, RawRecord, Tensor};

#[muon_sdk::preprocessor]
fn preprocess(input: RawRecord) -> Result<Vec<NamedTensor>, String> {
    if input.data.windows(4).any(|w| w == b"trap") {
        // On wasm32 an abort is the `unreachable` instruction: a trap.
        std::process::abort();
    }
    let length = input.data.len() as f32;
    if input.data.windows(4).any(|w| w == b"wide") {
        return Ok(vec![NamedTensor::new("x", Tensor::from_f32([2], &[length, length]))]);
    }
    Ok(vec![NamedTensor::new("x", Tensor::from_f32([1], &[length]))])
}
