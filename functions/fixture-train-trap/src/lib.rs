//! A training step whose `step` traps once it has taken `trap_after` steps
//! (a hyper-parameter, default 2), counted in its one parameter: a job's
//! retries and failures are tested with it.

use muon_sdk::{Evaluation, HyperParameters, NamedTensor, StepOutput, Tensor, TrainingStep};

struct Trap;

#[muon_sdk::training_step]
impl TrainingStep for Trap {
    fn init(_config: &str) -> Result<Vec<NamedTensor>, String> {
        Ok(vec![NamedTensor::new("steps", Tensor::from_f32([1], &[0.0]))])
    }

    #[expect(clippy::panic, reason = "the fixture exists to trap")]
    fn step(
        parameters: Vec<NamedTensor>,
        _batch: Vec<NamedTensor>,
        hyper: HyperParameters,
    ) -> Result<StepOutput, String> {
        let steps = steps(&parameters);
        if steps >= hyper.get_or("trap_after", 2.0) as f32 {
            println!("about to trap after {steps} steps");
            panic!("the training fixture trapped on purpose");
        }
        Ok(StepOutput {
            parameters: vec![NamedTensor::new("steps", Tensor::from_f32([1], &[steps + 1.0]))],
            loss: 1.0,
            metrics: Vec::new(),
        })
    }

    fn evaluate(parameters: Vec<NamedTensor>, _batch: Vec<NamedTensor>) -> Result<Evaluation, String> {
        Ok(Evaluation { metrics: vec![("loss".to_owned(), f64::from(steps(&parameters)))], predictions: Vec::new() })
    }
}

fn steps(parameters: &[NamedTensor]) -> f32 {
    NamedTensor::find(parameters, "steps").and_then(|t| t.to_f32().ok()).and_then(|v| v.first().copied()).unwrap_or(0.0)
}
