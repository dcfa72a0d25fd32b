//! The training-step kind.

use crate::{Evaluation, NamedTensor, StepOutput, StepsOutput};

/// Hyper-parameters of a step, by name.
#[derive(Debug, Clone, Default)]
pub struct HyperParameters(pub Vec<(String, f64)>);

impl HyperParameters {
    /// The value of `name`, or `default` when it was not given.
    pub fn get_or(&self, name: &str, default: f64) -> f64 {
        self.0.iter().find(|(n, _)| n == name).map_or(default, |(_, v)| *v)
    }
}

/// A model's training step. Put `#[muon_sdk::training_step]` on the impl.
pub trait TrainingStep {
    /// Initial parameters from a configuration (JSON text by convention).
    fn init(config: &str) -> Result<Vec<NamedTensor>, String>;

    /// One step: new parameters, the loss and any metrics.
    fn step(
        parameters: Vec<NamedTensor>,
        batch: Vec<NamedTensor>,
        hyper_parameters: HyperParameters,
    ) -> Result<StepOutput, String>;

    /// Several steps in one call: [`TrainingStep::step`] on each batch in
    /// order, each from the parameters the one before returned. The host
    /// trains through this, with as many batches as fit its limits, so that
    /// one sandboxed call serves many small steps. Override it to set up
    /// once for all of them (load a model once, say); the result must be
    /// what the steps one by one would give.
    fn steps(
        parameters: Vec<NamedTensor>,
        batches: Vec<Vec<NamedTensor>>,
        hyper_parameters: HyperParameters,
    ) -> Result<StepsOutput, String> {
        let mut parameters = parameters;
        let mut losses = Vec::with_capacity(batches.len());
        for batch in batches {
            let step = Self::step(parameters, batch, hyper_parameters.clone())?;
            parameters = step.parameters;
            losses.push(step.loss);
        }
        Ok(StepsOutput { parameters, losses })
    }

    /// The parameters' figures (`loss`, `accuracy`, ...) on a batch of
    /// held-out data, and a classifier's predicted class per row.
    fn evaluate(parameters: Vec<NamedTensor>, batch: Vec<NamedTensor>) -> Result<Evaluation, String>;
}
