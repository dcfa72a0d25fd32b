//! The [`Preprocessor`] of an upload with `preprocess=FUNCTION`: each record
//! runs in a fresh instance of the tenant's preprocessor function, through
//! the one invoker, under the function's own limits and deadline.

use std::sync::{Arc, Mutex};

use crate::engine::{NamedTensor, RawRecord};
use crate::invoke::{Caller, Input, Invoker, Output};
use crate::metering::Measurement;
use crate::registry::Version;

use super::Preprocessor;

/// Runs records through one function version and adds up what they used,
/// for the build's one usage record.
pub struct FunctionPreprocessor {
    invoker: Arc<Invoker>,
    version: Arc<Version>,
    runtime: tokio::runtime::Handle,
    work_id: String,
    used: Mutex<Measurement>,
}

impl FunctionPreprocessor {
    /// A preprocessor over `version`, whose calls belong to the work
    /// `work_id`; calls block on `runtime`, so the build runs on blocking
    /// threads (never on a runtime worker).
    pub fn new(invoker: Arc<Invoker>, version: Arc<Version>, runtime: tokio::runtime::Handle, work_id: String) -> Self {
        Self { invoker, version, runtime, work_id, used: Mutex::default() }
    }

    /// What every call so far used together.
    pub fn used(&self) -> Measurement {
        self.used.lock().map(|used| *used).unwrap_or_default()
    }
}

impl Preprocessor for FunctionPreprocessor {
    fn preprocess(&self, content_type: &str, data: &[u8]) -> Result<Vec<NamedTensor>, String> {
        let record = RawRecord { content_type: content_type.to_owned(), data: data.to_vec() };
        let caller = Caller { work_id: &self.work_id, log: None };
        let (result, used) =
            self.runtime.block_on(self.invoker.run(&self.version, Input::Preprocess(record), None, caller));
        if let Ok(mut total) = self.used.lock() {
            total.add(&used);
        }
        match result {
            Ok(Output::Tensors(tensors)) => Ok(tensors),
            Ok(_) => Err("the preprocessor returned something other than tensors".to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }
}
