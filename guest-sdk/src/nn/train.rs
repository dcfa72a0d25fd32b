//! Training through graphs: a training step whose arithmetic is an ONNX
//! model run by the host's backend, the guest only passing tensors.
//!
//! A *train-step graph* takes the parameters, a batch and hyper-parameters
//! as inputs of the same names, and returns each parameter updated as
//! `<name>.next`, the batch's `loss`, and any further figures (`accuracy`,
//! ...) as fp32 outputs of one element. An *evaluation graph* takes the
//! parameters and a batch and returns its figures the same way, and a
//! classifier's predicted class per row as i64 `predictions`. With them a
//! [`TrainingStep`](crate::TrainingStep) is a few lines:
//!
//! ```ignore
//! fn step(parameters: Vec<NamedTensor>, batch: Vec<NamedTensor>, hyper: HyperParameters)
//!     -> Result<StepOutput, String> {
//!     let hyper = [("learning_rate", hyper.get_or("learning_rate", 0.02))];
//!     Ok(Model::load("my-train-step")?.train_step(&parameters, &batch, &hyper)?)
//! }
//!
//! fn evaluate(parameters: Vec<NamedTensor>, batch: Vec<NamedTensor>) -> Result<Evaluation, String> {
//!     Ok(Model::load("my-eval")?.evaluate(&parameters, &batch)?)
//! }
//! ```

use super::{ErrorCode, Model, NnError, Outputs, from_wit, to_wit, wit};
use crate::{Evaluation, NamedTensor, StepOutput, StepsOutput, Tensor, TensorType};

/// Parameters whose names start with this are optimizer state (momentum
/// velocities, say): a step updates them like the others, and the host keeps
/// them between steps, but they are not part of the model. An evaluation
/// graph is not given them, and the host leaves them out when it writes
/// trained parameters into a model.
pub const OPTIMIZER_STATE_PREFIX: &str = "optimizer.";

/// The suffix of the output that holds a parameter's value after the step.
const NEXT: &str = ".next";

impl Model {
    /// One training step on a train-step graph: `parameters`, `batch` and
    /// `hyper_parameters` (each an fp32 `[1]` input of its name) go in; each
    /// parameter's `<name>.next` output comes back under the parameter's
    /// name, with `loss` and the graph's other one-element fp32 outputs as
    /// metrics.
    pub fn train_step(
        &self,
        parameters: &[NamedTensor],
        batch: &[NamedTensor],
        hyper_parameters: &[(&str, f64)],
    ) -> Result<StepOutput, NnError> {
        let names = StepNames::of(parameters.iter().map(|t| t.name.as_str()));
        let held = parameters.iter().map(|t| to_wit(&t.tensor)).collect();
        let HeldStep { parameters: updated, others } = self.step_held(&names, held, batch, hyper_parameters)?;
        let others =
            Outputs(others.into_iter().map(|(name, tensor)| NamedTensor::new(name, from_wit(&tensor))).collect());
        let mut metrics = figures(&others, |_| true);
        let at = metrics.iter().position(|(name, _)| name == "loss").ok_or_else(no_loss)?;
        let (_, loss) = metrics.remove(at);
        Ok(StepOutput { parameters: names.read_held(updated), loss, metrics })
    }

    /// [`Model::train_step`] on each of `batches` in order, each from the
    /// parameters the one before returned: a
    /// [`TrainingStep::steps`](crate::TrainingStep::steps) that loads its
    /// graph once for all of them.
    ///
    /// The parameters stay in the host from one step to the next: each
    /// step's `<name>.next` outputs go back in as the next step's inputs
    /// without being copied into the guest and out again. Each step reads
    /// back only its loss, and the parameters are read once, at the end.
    pub fn train_steps(
        &self,
        parameters: Vec<NamedTensor>,
        batches: &[Vec<NamedTensor>],
        hyper_parameters: &[(&str, f64)],
    ) -> Result<StepsOutput, NnError> {
        let names = StepNames::of(parameters.iter().map(|t| t.name.as_str()));
        let mut held: Vec<wit::Tensor> = parameters.iter().map(|t| to_wit(&t.tensor)).collect();
        drop(parameters);
        let mut losses = Vec::with_capacity(batches.len());
        for batch in batches {
            let HeldStep { parameters: updated, others } = self.step_held(&names, held, batch, hyper_parameters)?;
            held = updated;
            let (_, loss) = others.iter().find(|(name, _)| name == "loss").ok_or_else(no_loss)?;
            losses.push(held_scalar(loss).ok_or_else(no_loss)?);
        }
        Ok(StepsOutput { parameters: names.read_held(held), losses })
    }

    /// One step on parameters the host holds (`held`, in the order of
    /// `names`): the updated parameters in the same order, and the graph's
    /// other outputs, unread.
    fn step_held(
        &self,
        names: &StepNames,
        held: Vec<wit::Tensor>,
        batch: &[NamedTensor],
        hyper_parameters: &[(&str, f64)],
    ) -> Result<HeldStep, NnError> {
        let parameters = names.parameters.iter().cloned().zip(held);
        let batch = batch.iter().map(|t| (t.name.clone(), to_wit(&t.tensor)));
        // Graphs compute in fp32; the host hands hyper-parameters as f64.
        let hyper = hyper_parameters.iter().map(|(name, value)| {
            let bytes = (*value as f32).to_le_bytes();
            ((*name).to_owned(), wit::Tensor::new(&[1], wit::TensorType::Fp32, &bytes))
        });
        let mut outputs = self.context.compute(parameters.chain(batch).chain(hyper).collect())?;
        let updated = names
            .next
            .iter()
            .map(|next| {
                let at = outputs
                    .iter()
                    .position(|(output, _)| output == next)
                    .ok_or_else(|| contract(format!("no output `{next}`")))?;
                Ok(outputs.swap_remove(at).1)
            })
            .collect::<Result<Vec<_>, NnError>>()?;
        Ok(HeldStep { parameters: updated, others: outputs })
    }

    /// The figures of `parameters` on `batch` from an evaluation graph: its
    /// one-element fp32 outputs by name, and its i64 `predictions` (one
    /// class per row) when it has them. Optimizer state (parameters named
    /// [`OPTIMIZER_STATE_PREFIX`]`*`) is not passed to the graph.
    pub fn evaluate(&self, parameters: &[NamedTensor], batch: &[NamedTensor]) -> Result<Evaluation, NnError> {
        let model = parameters.iter().filter(|t| !t.name.starts_with(OPTIMIZER_STATE_PREFIX));
        let outputs = self.compute(model.chain(batch).map(|t| (t.name.as_str(), &t.tensor)))?;
        let predictions = match outputs.get("predictions") {
            Some(tensor) => {
                tensor.to_i64().map_err(|err| contract(format!("output `predictions` must be i64: {err}")))?
            }
            None => Vec::new(),
        };
        Ok(Evaluation { metrics: figures(&outputs, |name| name != "predictions"), predictions })
    }
}

/// The parameters' names, and the names of their outputs after a step,
/// made once for every step of a call.
struct StepNames {
    parameters: Vec<String>,
    next: Vec<String>,
}

impl StepNames {
    fn of<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        let parameters: Vec<String> = names.map(str::to_owned).collect();
        let next = parameters.iter().map(|name| format!("{name}{NEXT}")).collect();
        Self { parameters, next }
    }

    /// The parameters the host held, read back under their names.
    fn read_held(&self, held: Vec<wit::Tensor>) -> Vec<NamedTensor> {
        self.parameters
            .iter()
            .zip(held)
            .map(|(name, tensor)| NamedTensor::new(name.clone(), from_wit(&tensor)))
            .collect()
    }
}

/// The value of a one-element fp32 tensor the host holds, read with two
/// calls (its type and its four bytes) rather than three.
fn held_scalar(tensor: &wit::Tensor) -> Option<f64> {
    if tensor.ty() != wit::TensorType::Fp32 {
        return None;
    }
    let bytes: [u8; 4] = tensor.data().try_into().ok()?;
    Some(f64::from(f32::from_le_bytes(bytes)))
}

/// A step's outputs, all still in the host.
struct HeldStep {
    /// The updated parameters, in the order of their names.
    parameters: Vec<wit::Tensor>,
    /// The graph's other outputs, unread.
    others: Vec<(String, wit::Tensor)>,
}

/// The one-element fp32 outputs whose names pass `keep`, as figures.
fn figures(outputs: &Outputs, keep: impl Fn(&str) -> bool) -> Vec<(String, f64)> {
    outputs
        .iter()
        .filter(|output| keep(&output.name))
        .filter_map(|output| Some((output.name.clone(), scalar(&output.tensor)?)))
        .collect()
}

/// The value of a one-element fp32 tensor.
fn scalar(tensor: &Tensor) -> Option<f64> {
    if tensor.ty != TensorType::Fp32 {
        return None;
    }
    match tensor.to_f32().as_deref() {
        Ok([value]) => Some(f64::from(*value)),
        _ => None,
    }
}

fn no_loss() -> NnError {
    contract("no output `loss` (fp32, one element): the batch's loss before the step".to_owned())
}

/// A graph that does not keep the train-step or evaluation convention.
fn contract(what: String) -> NnError {
    NnError { code: ErrorCode::InvalidArgument, message: format!("the graph does not fit the convention: {what}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_the_scalar_fp32_outputs() {
        let outputs = Outputs::from(vec![
            NamedTensor::new("w.next", Tensor::from_f32([1], &[0.5])),
            NamedTensor::new("loss", Tensor::from_f32([1], &[2.0])),
            NamedTensor::new("accuracy", Tensor::from_f32([], &[0.25])),
            NamedTensor::new("predictions", Tensor::from_i64([2], &[1, 3])),
            NamedTensor::new("probabilities", Tensor::from_f32([2], &[0.5, 0.5])),
        ]);
        let kept = figures(&outputs, |name| !name.ends_with(NEXT));
        assert_eq!(kept, [("loss".to_owned(), 2.0), ("accuracy".to_owned(), 0.25)]);
    }
}
