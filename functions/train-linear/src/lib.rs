//! Linear regression by gradient descent: parameters `w` [features] and `b` [1];
//! a batch of `x` [n, features] and `y` [n]; hyper-parameter `learning_rate`.

use muon_sdk::{Evaluation, HyperParameters, NamedTensor, StepOutput, Tensor, TrainingStep};

struct Linear;

#[muon_sdk::training_step]
impl TrainingStep for Linear {
    fn init(config: &str) -> Result<Vec<NamedTensor>, String> {
        let config: serde_json::Value = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        let features = config["features"].as_u64().ok_or("config needs `features`, a positive integer")?;
        let features = u32::try_from(features).map_err(|_| "too many features")?;
        Ok(vec![
            NamedTensor::new("w", Tensor::from_f32([features], &vec![0.0; features as usize])),
            NamedTensor::new("b", Tensor::from_f32([1], &[0.0])),
        ])
    }

    fn step(
        parameters: Vec<NamedTensor>,
        batch: Vec<NamedTensor>,
        hyper: HyperParameters,
    ) -> Result<StepOutput, String> {
        let (mut w, mut b, x, y) = read(&parameters, &batch)?;
        let features = w.len();
        let n = y.len() as f32;
        let lr = hyper.get_or("learning_rate", 0.01) as f32;
        let mut grad_w = vec![0.0f32; features];
        let mut grad_b = 0.0f32;
        let mut loss = 0.0f32;
        for (row, target) in x.chunks_exact(features).zip(&y) {
            let prediction: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b;
            let error = prediction - target;
            loss += error * error / n;
            for (g, a) in grad_w.iter_mut().zip(row) {
                *g += 2.0 * error * a / n;
            }
            grad_b += 2.0 * error / n;
        }
        for (weight, g) in w.iter_mut().zip(&grad_w) {
            *weight -= lr * g;
        }
        b -= lr * grad_b;
        let grad_norm = (grad_w.iter().map(|g| g * g).sum::<f32>() + grad_b * grad_b).sqrt();
        Ok(StepOutput {
            parameters: vec![
                NamedTensor::new("w", Tensor::from_f32([features as u32], &w)),
                NamedTensor::new("b", Tensor::from_f32([1], &[b])),
            ],
            loss: f64::from(loss),
            metrics: vec![("grad_norm".to_owned(), f64::from(grad_norm))],
        })
    }

    fn evaluate(parameters: Vec<NamedTensor>, batch: Vec<NamedTensor>) -> Result<Evaluation, String> {
        let (w, b, x, y) = read(&parameters, &batch)?;
        let features = w.len();
        let mut squared = 0.0f64;
        let mut absolute = 0.0f64;
        for (row, target) in x.chunks_exact(features).zip(&y) {
            let prediction: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b;
            let error = f64::from(prediction - target);
            squared += error * error;
            absolute += error.abs();
        }
        let n = y.len().max(1) as f64;
        Ok(Evaluation {
            metrics: vec![("loss".to_owned(), squared / n), ("mae".to_owned(), absolute / n)],
            predictions: Vec::new(),
        })
    }
}

/// The weights `w`, the bias `b`, and the batch's `x` and `y`.
type Read = (Vec<f32>, f32, Vec<f32>, Vec<f32>);

/// The weights `w`, the bias `b`, and the batch's `x` and `y`, checked to fit together.
fn read(parameters: &[NamedTensor], batch: &[NamedTensor]) -> Result<Read, String> {
    let read = |set: &[NamedTensor], name: &str| -> Result<Vec<f32>, String> {
        NamedTensor::find(set, name)
            .ok_or(format!("missing tensor `{name}`"))?
            .to_f32()
            .map_err(|e| format!("{name}: {e}"))
    };
    let w = read(parameters, "w")?;
    let b = read(parameters, "b")?.first().copied().ok_or("`b` is empty")?;
    let x = read(batch, "x")?;
    let y = read(batch, "y")?;
    let features = w.len();
    if features == 0 || x.len() != y.len() * features {
        return Err(format!("x has {} values; expected {} rows x {features} features", x.len(), y.len()));
    }
    Ok((w, b, x, y))
}
