//! Placeholder until the template filler lands.

use crate::engine::NamedTensor;

/// Why a template cannot be filled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// Writes `parameters` into `template`'s initializers.
pub fn fill(_template: &[u8], _parameters: &[NamedTensor]) -> Result<Vec<u8>, TemplateError> {
    Err(TemplateError("exporting into a template is not available in this build".to_owned()))
}
