//! The digits MLP (64 pixels -> `hidden` ReLU -> 10 classes), trained from
//! scratch with its arithmetic on the host's inference backend: `step` runs
//! the tenant's train-step graph `digits-mlp-train` and `evaluate` its
//! evaluation graph `digits-mlp-eval` through wasi-nn (both made by
//! `scripts/make-training-graphs.py`, in `examples/training/`).
//!
//! - `init({"hidden": 64, "seed": 0})` (both optional): He-initialised
//!   weights `w1` [64, hidden] and `w2` [hidden, 10], zero biases `b1` and
//!   `b2`, and zero momentum velocities `optimizer.w1` ... `optimizer.b2`,
//!   the same for the same seed on every machine;
//! - `step`: a batch `x` fp32 [n, 64] (raw pixels 0..16) and `y` i64 [n];
//!   hyper-parameters `learning_rate` (default 0.02) and `momentum` (default
//!   0, plain SGD);
//! - `steps`: the same over several batches, the graph loaded once;
//! - `evaluate`: `loss`, `accuracy` and the predicted class per row.

use muon_sdk::nn::{Model, OPTIMIZER_STATE_PREFIX};
use muon_sdk::{Evaluation, HyperParameters, NamedTensor, StepOutput, StepsOutput, Tensor, TrainingStep};
use serde::Deserialize;

const PIXELS: u32 = 64;
const CLASSES: u32 = 10;
/// Wide enough for any use of 8x8 digits, small enough that a typo cannot
/// ask for gigabytes of parameters.
const MAX_HIDDEN: u32 = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_hidden")]
    hidden: u32,
    #[serde(default)]
    seed: u64,
}

fn default_hidden() -> u32 {
    64
}

struct Digits;

#[muon_sdk::training_step]
impl TrainingStep for Digits {
    fn init(config: &str) -> Result<Vec<NamedTensor>, String> {
        let config: Config = match config.trim() {
            "" | "null" => serde_json::from_str("{}"),
            text => serde_json::from_str(text),
        }
        .map_err(|err| format!("config: {err}; expected {{\"hidden\": 64, \"seed\": 0}}"))?;
        if !(1..=MAX_HIDDEN).contains(&config.hidden) {
            return Err(format!("config: hidden must be from 1 to {MAX_HIDDEN}, not {}", config.hidden));
        }
        let hidden = config.hidden;
        let mut normal = Normal::new(config.seed);
        let parameters = [
            ("w1", vec![PIXELS, hidden], normal.he(PIXELS, PIXELS * hidden)),
            ("b1", vec![hidden], vec![0.0; hidden as usize]),
            ("w2", vec![hidden, CLASSES], normal.he(hidden, hidden * CLASSES)),
            ("b2", vec![CLASSES], vec![0.0; CLASSES as usize]),
        ];
        let velocities: Vec<NamedTensor> = parameters
            .iter()
            .map(|(name, shape, values)| {
                let zeros = vec![0.0; values.len()];
                NamedTensor::new(format!("{OPTIMIZER_STATE_PREFIX}{name}"), Tensor::from_f32(shape.clone(), &zeros))
            })
            .collect();
        let parameters = parameters
            .into_iter()
            .map(|(name, shape, values)| NamedTensor::new(name, Tensor::from_f32(shape, &values)));
        Ok(parameters.chain(velocities).collect())
    }

    fn step(
        parameters: Vec<NamedTensor>,
        batch: Vec<NamedTensor>,
        hyper: HyperParameters,
    ) -> Result<StepOutput, String> {
        Ok(Model::load("digits-mlp-train")?.train_step(&parameters, &batch, &optimizer(&hyper))?)
    }

    /// The host's usual way in: the graph loaded once for every batch.
    fn steps(
        parameters: Vec<NamedTensor>,
        batches: Vec<Vec<NamedTensor>>,
        hyper: HyperParameters,
    ) -> Result<StepsOutput, String> {
        Ok(Model::load("digits-mlp-train")?.train_steps(parameters, &batches, &optimizer(&hyper))?)
    }

    fn evaluate(parameters: Vec<NamedTensor>, batch: Vec<NamedTensor>) -> Result<Evaluation, String> {
        Ok(Model::load("digits-mlp-eval")?.evaluate(&parameters, &batch)?)
    }
}

/// The train-step graph's hyper-parameters, with their defaults.
fn optimizer(hyper: &HyperParameters) -> [(&'static str, f64); 2] {
    [("learning_rate", hyper.get_or("learning_rate", 0.02)), ("momentum", hyper.get_or("momentum", 0.0))]
}

/// Standard normal numbers from a seed: SplitMix64 for the bits, Box-Muller
/// for the shape. Small and the same everywhere, which is all an
/// initialisation needs (no host randomness, so a seed replays a trial).
struct Normal {
    state: u64,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in (0, 1]: never 0, whose logarithm Box-Muller takes.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// `count` weights of a layer with `fan_in` inputs, He-initialised:
    /// normal with standard deviation sqrt(2 / fan_in), which keeps the
    /// signal's scale through ReLUs.
    fn he(&mut self, fan_in: u32, count: u32) -> Vec<f32> {
        let std = (2.0 / f64::from(fan_in)).sqrt();
        (0..count).map(|_| (self.sample() * std) as f32).collect()
    }
}
