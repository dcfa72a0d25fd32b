//! The tree-structured Parzen estimator, as Optuna's `TPESampler` draws by
//! default: each hyper-parameter on its own; the finished trials split into
//! the best `γ` and the rest; a Parzen density of each (a Gaussian per
//! observation, or smoothed counts for a `choice`, plus a flat prior); and
//! of some candidates drawn from the good density, the one where good over
//! bad is highest. Trials drawn before enough have finished are random.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::api::jobs::{HyperValue, JobSpec, Mode, Space};

/// Candidates drawn from the good density per hyper-parameter.
const CANDIDATES: usize = 24;

/// Share of the finished trials that count as good (Optuna: 10%, at most 25).
const GAMMA: f64 = 0.1;
const MAX_GOOD: usize = 25;

/// Trials a job of `trials` draws at random before the estimator takes over.
pub fn startup_trials(trials: u32) -> u32 {
    (trials / 3).clamp(2, 10)
}

/// One finished trial: its hyper-parameters and its objective.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The values it ran with.
    pub hyper: BTreeMap<String, f64>,
    /// Its objective at the end.
    pub objective: f64,
}

/// The hyper-parameters of the next trial, from what `observations` tell,
/// drawn with `seed`.
pub fn draw(spec: &JobSpec, observations: &[Observation], seed: u64) -> BTreeMap<String, f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sorted: Vec<&Observation> = observations.iter().filter(|o| o.objective.is_finite()).collect();
    sorted.sort_by(|a, b| match spec.objective.mode {
        Mode::Min => a.objective.total_cmp(&b.objective),
        Mode::Max => b.objective.total_cmp(&a.objective),
    });
    let good_count = ((sorted.len() as f64 * GAMMA).ceil() as usize).clamp(1, MAX_GOOD);
    let (good, bad) = sorted.split_at(good_count.min(sorted.len()));
    spec.hyper
        .iter()
        .map(|(name, value)| {
            let value = match value {
                HyperValue::Fixed(v) => *v,
                HyperValue::Space(space) if good.is_empty() || bad.is_empty() => {
                    super::search::draw_one(space, &mut rng)
                }
                HyperValue::Space(space) => {
                    let values = |set: &[&Observation]| {
                        set.iter().filter_map(|o| o.hyper.get(name).copied()).collect::<Vec<_>>()
                    };
                    best_candidate(space, &values(good), &values(bad), &mut rng)
                }
            };
            (name.clone(), value)
        })
        .collect()
}

fn best_candidate(space: &Space, good: &[f64], bad: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    match space {
        Space::Choice(values) => {
            let good = Categorical::new(values, good);
            let bad = Categorical::new(values, bad);
            let candidates: Vec<usize> = (0..CANDIDATES).map(|_| good.sample(rng)).collect();
            let best = candidates
                .into_iter()
                .max_by(|&a, &b| (good.p[a] / bad.p[a]).total_cmp(&(good.p[b] / bad.p[b])))
                .unwrap_or(0);
            values.get(best).copied().unwrap_or_default()
        }
        Space::Uniform([low, high]) => continuous(*low, *high, good, bad, rng, false),
        Space::LogUniform([low, high]) => continuous(*low, *high, good, bad, rng, true),
        Space::IntUniform([low, high]) => {
            let (low, high) = (*low as f64 - 0.5, *high as f64 + 0.5);
            continuous(low, high, good, bad, rng, false).round().clamp(low + 0.5, high - 0.5)
        }
    }
}

/// A continuous space: the densities live in log space for `log_uniform`.
fn continuous(low: f64, high: f64, good: &[f64], bad: &[f64], rng: &mut ChaCha8Rng, log: bool) -> f64 {
    let to = |v: f64| if log { v.ln() } else { v };
    let (lo, hi) = (to(low), to(high));
    if hi <= lo {
        return low;
    }
    let good = Parzen::new(lo, hi, good.iter().map(|&v| to(v)).collect());
    let bad = Parzen::new(lo, hi, bad.iter().map(|&v| to(v)).collect());
    let best = (0..CANDIDATES)
        .map(|_| good.sample(rng))
        .max_by(|&a, &b| {
            (good.log_density(a) - bad.log_density(a)).total_cmp(&(good.log_density(b) - bad.log_density(b)))
        })
        .unwrap_or(lo);
    if log { best.exp().clamp(low, high) } else { best.clamp(low, high) }
}

/// A uniform double in [0, 1).
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Counts of each choice among the observations, smoothed by one.
struct Categorical {
    p: Vec<f64>,
}

impl Categorical {
    fn new(values: &[f64], observed: &[f64]) -> Self {
        let mut counts = vec![1.0; values.len()];
        for v in observed {
            if let Some(i) = values.iter().position(|c| c == v) {
                counts[i] += 1.0;
            }
        }
        let total: f64 = counts.iter().sum();
        Self { p: counts.into_iter().map(|c| c / total).collect() }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let mut left = unit(rng);
        for (i, p) in self.p.iter().enumerate() {
            left -= p;
            if left < 0.0 {
                return i;
            }
        }
        self.p.len().saturating_sub(1)
    }
}

/// A Gaussian per observation, each as wide as its gap to its neighbours
/// (Optuna's rule), and a flat prior over the space, equally weighted.
struct Parzen {
    low: f64,
    high: f64,
    means: Vec<f64>,
    widths: Vec<f64>,
}

impl Parzen {
    fn new(low: f64, high: f64, mut means: Vec<f64>) -> Self {
        means.retain(|m| m.is_finite());
        means.sort_by(f64::total_cmp);
        let span = high - low;
        // Gaps are measured with the prior's centre among the points, as
        // Optuna does, so a lone observation is not as wide as the space.
        let mut points = means.clone();
        points.push((low + high) / 2.0);
        points.sort_by(f64::total_cmp);
        let gap = |x: f64| {
            let i = points.partition_point(|p| *p < x);
            let left = if i == 0 { x - low } else { x - points[i - 1] };
            let right = points.get(i + 1).map_or(high - x, |next| next - x);
            left.max(right)
        };
        let floor = span / (1.0 + means.len() as f64).min(100.0);
        let widths = means.iter().map(|&m| gap(m).clamp(floor, span)).collect();
        Self { low, high, means, widths }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        let component = (unit(rng) * (self.means.len() + 1) as f64) as usize;
        match (self.means.get(component), self.widths.get(component)) {
            (Some(&mean), Some(&width)) => {
                // Box-Muller, redrawn until it falls in the space.
                for _ in 0..16 {
                    let (u, v) = (unit(rng).max(f64::MIN_POSITIVE), unit(rng));
                    let x = mean + width * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                    if (self.low..=self.high).contains(&x) {
                        return x;
                    }
                }
                mean
            }
            _ => self.low + (self.high - self.low) * unit(rng),
        }
    }

    fn log_density(&self, x: f64) -> f64 {
        let weight = 1.0 / (self.means.len() + 1) as f64;
        let mut density = weight / (self.high - self.low);
        for (mean, width) in self.means.iter().zip(&self.widths) {
            let z = (x - mean) / width;
            density += weight * (-0.5 * z * z).exp() / (width * (std::f64::consts::TAU).sqrt());
        }
        density.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hyper: serde_json::Value, mode: &str) -> anyhow::Result<JobSpec> {
        Ok(serde_json::from_value(serde_json::json!({
            "function": "f", "dataset": "d", "epochs": 1, "hyper": hyper,
            "objective": {"metric": "val_loss", "mode": mode}
        }))?)
    }

    /// On `(x - 0.3)^2` over [0, 1], draws after 20 random observations land
    /// nearer the minimum than random draws do.
    #[test]
    fn draws_concentrate_where_the_good_trials_were() -> anyhow::Result<()> {
        let spec = spec(serde_json::json!({"x": {"uniform": [0.0, 1.0]}, "c": {"choice": [1.0, 2.0, 3.0]}}), "min")?;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let observations: Vec<Observation> = (0..20)
            .map(|_| {
                let (x, c) = (unit(&mut rng), [1.0, 2.0, 3.0][(unit(&mut rng) * 3.0) as usize]);
                let objective = (x - 0.3) * (x - 0.3) + if c == 2.0 { 0.0 } else { 0.5 };
                Observation { hyper: BTreeMap::from([("x".to_owned(), x), ("c".to_owned(), c)]), objective }
            })
            .collect();
        let draws: Vec<BTreeMap<String, f64>> = (0..200).map(|seed| draw(&spec, &observations, seed)).collect();
        let distance: f64 = draws.iter().map(|d| (d["x"] - 0.3).abs()).sum::<f64>() / draws.len() as f64;
        assert!(distance < 0.15, "mean distance to the minimum {distance}; a uniform draw's is 0.29");
        let best_choice = draws.iter().filter(|d| d["c"] == 2.0).count();
        assert!(best_choice > 100, "the good choice drawn {best_choice} times of 200");
        assert!(draws.iter().all(|d| (0.0..=1.0).contains(&d["x"])));
        Ok(())
    }

    #[test]
    fn log_and_int_spaces_stay_in_their_bounds_and_maximising_works() -> anyhow::Result<()> {
        let spec = spec(serde_json::json!({"lr": {"log_uniform": [0.001, 1.0]}, "n": {"int_uniform": [2, 6]}}), "max")?;
        let observations: Vec<Observation> = (0..12)
            .map(|i| {
                let (lr, n) = (0.001 * 1.8f64.powi(i), f64::from(2 + i % 5));
                Observation {
                    hyper: BTreeMap::from([("lr".to_owned(), lr), ("n".to_owned(), n)]),
                    objective: -(lr.ln() - 0.01f64.ln()).abs(),
                }
            })
            .collect();
        for seed in 0..50 {
            let d = draw(&spec, &observations, seed);
            assert!((0.001..=1.0).contains(&d["lr"]) && [2.0, 3.0, 4.0, 5.0, 6.0].contains(&d["n"]), "{d:?}");
        }
        let near = (0..50).filter(|&s| (draw(&spec, &observations, s)["lr"].ln() - 0.01f64.ln()).abs() < 1.5).count();
        assert!(near > 25, "{near} of 50 draws near the best learning rate");
        assert!(draw(&spec, &[], 1).contains_key("lr"), "no observation: a random draw");
        Ok(())
    }
}
