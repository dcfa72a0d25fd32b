//! Choosing trials: the spec's checks, the hyper-parameters of every trial
//! (grid and random search, drawn up front from the job's seed), and ASHA's
//! rung decisions.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::api::jobs::{Asha, EarlyStopping, HyperValue, JobSpec, Mode, SearchMethod, Space};

use super::JobError;

/// Most trials one job may have.
pub const MAX_TRIALS: u32 = 1000;

/// Most epochs one trial may run.
pub const MAX_EPOCHS: u32 = 100_000;

/// Most batches one call of a training function's `steps` may take.
pub const MAX_STEPS_PER_CALL: u32 = 4096;

/// Most epochs all of a job's trials together may run: each is an event,
/// a report point and a database row, kept until the job is deleted.
pub const MAX_JOB_EPOCHS: u64 = 1_000_000;

/// Checks `spec` and draws every trial's hyper-parameters; `None` for a
/// trial that TPE draws when it starts, from the trials finished by then.
pub fn trials(spec: &JobSpec) -> Result<Vec<Option<BTreeMap<String, f64>>>, JobError> {
    check(spec)?;
    Ok(match spec.search.method {
        SearchMethod::Grid => grid(spec)?.into_iter().map(Some).collect(),
        SearchMethod::Random => random(spec).into_iter().map(Some).collect(),
        SearchMethod::Tpe => {
            let startup = super::tpe::startup_trials(spec.search.trials) as usize;
            random(spec).into_iter().enumerate().map(|(i, hyper)| (i < startup).then_some(hyper)).collect()
        }
    })
}

fn check(spec: &JobSpec) -> Result<(), JobError> {
    if !(1..=MAX_EPOCHS).contains(&spec.epochs) {
        return Err(JobError::bad_spec("epochs", format!("must be from 1 to {MAX_EPOCHS}")));
    }
    if !(1..=1_000_000).contains(&spec.batch_size) {
        return Err(JobError::bad_spec("batch_size", "must be from 1 to 1000000"));
    }
    if !(1..=MAX_STEPS_PER_CALL).contains(&spec.steps_per_call) {
        return Err(JobError::bad_spec("steps_per_call", format!("must be from 1 to {MAX_STEPS_PER_CALL}")));
    }
    if spec.checkpoint_every_epochs == 0 {
        return Err(JobError::bad_spec("checkpoint_every_epochs", "must be at least 1"));
    }
    if !(1..=MAX_TRIALS).contains(&spec.search.trials) {
        return Err(JobError::bad_spec("search.trials", format!("must be from 1 to {MAX_TRIALS}")));
    }
    if u64::from(spec.search.trials) * u64::from(spec.epochs) > MAX_JOB_EPOCHS {
        return Err(JobError::bad_spec(
            "search.trials",
            format!(
                "{} trials of {} epochs is more than {MAX_JOB_EPOCHS} epochs in all; split the search into jobs",
                spec.search.trials, spec.epochs
            ),
        ));
    }
    if spec.search.parallel == 0 {
        return Err(JobError::bad_spec("search.parallel", "must be at least 1"));
    }
    if spec.max_runtime_s == Some(0) {
        return Err(JobError::bad_spec("max_runtime_s", "must be at least 1 when given"));
    }
    if !spec.config.is_object() && !spec.config.is_null() {
        return Err(JobError::bad_spec("config", "must be a JSON object"));
    }
    if let Some(EarlyStopping::Asha(asha)) = &spec.search.early_stopping {
        if asha.grace_epochs == 0 {
            return Err(JobError::bad_spec("search.early_stopping.asha.grace_epochs", "must be at least 1"));
        }
        if asha.reduction_factor < 2 {
            return Err(JobError::bad_spec("search.early_stopping.asha.reduction_factor", "must be at least 2"));
        }
    }
    let metric = &spec.objective.metric;
    if metric != "loss" && !metric.starts_with("val_") {
        return Err(JobError::bad_spec(
            "objective.metric",
            format!("`{metric}` is neither `loss` nor `val_` and a metric of the function's `evaluate`"),
        ));
    }
    for (name, value) in &spec.hyper {
        check_value(name, value)?;
    }
    Ok(())
}

fn check_value(name: &str, value: &HyperValue) -> Result<(), JobError> {
    let field = format!("hyper.{name}");
    let bad = |message: &str| Err(JobError::bad_spec(&field, message));
    match value {
        HyperValue::Fixed(v) if !v.is_finite() => bad("must be a finite number"),
        HyperValue::Space(Space::Choice(values)) if values.is_empty() => bad("`choice` needs at least one value"),
        HyperValue::Space(Space::Choice(values)) if values.iter().any(|v| !v.is_finite()) => {
            bad("`choice` values must be finite numbers")
        }
        HyperValue::Space(Space::Uniform([low, high])) if !(low.is_finite() && high.is_finite() && low <= high) => {
            bad("`uniform` needs [low, high] with low <= high")
        }
        HyperValue::Space(Space::LogUniform([low, high]))
            if !(low.is_finite() && high.is_finite() && 0.0 < *low && low <= high) =>
        {
            bad("`log_uniform` needs [low, high] with 0 < low <= high")
        }
        HyperValue::Space(Space::IntUniform([low, high])) if low > high => {
            bad("`int_uniform` needs [low, high] with low <= high")
        }
        _ => Ok(()),
    }
}

/// Every combination of the `choice` spaces (the last name varying
/// fastest), cycled to `search.trials`; other spaces are not gridded.
fn grid(spec: &JobSpec) -> Result<Vec<BTreeMap<String, f64>>, JobError> {
    let mut combinations = vec![BTreeMap::new()];
    for (name, value) in &spec.hyper {
        let values = match value {
            HyperValue::Fixed(v) => vec![*v],
            HyperValue::Space(Space::Choice(values)) => values.clone(),
            HyperValue::Space(_) => {
                return Err(JobError::bad_spec(
                    &format!("hyper.{name}"),
                    "a grid search takes fixed values and `choice` spaces only; use `random` for ranges",
                ));
            }
        };
        if combinations.len().saturating_mul(values.len()) > MAX_TRIALS as usize {
            return Err(JobError::bad_spec("hyper", format!("the grid has more than {MAX_TRIALS} combinations")));
        }
        combinations = combinations
            .into_iter()
            .flat_map(|base| {
                values.iter().map(move |v| {
                    let mut next = base.clone();
                    next.insert(name.clone(), *v);
                    next
                })
            })
            .collect();
    }
    let wanted = spec.search.trials as usize;
    if wanted > combinations.len() {
        return Err(JobError::bad_spec(
            "search.trials",
            format!("the grid has {} combinations; ask for at most that many trials", combinations.len()),
        ));
    }
    combinations.truncate(wanted);
    Ok(combinations)
}

/// Independent draws for each trial from the job's seed: the same spec
/// gives the same trials.
fn random(spec: &JobSpec) -> Vec<BTreeMap<String, f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    (0..spec.search.trials)
        .map(|_| spec.hyper.iter().map(|(name, value)| (name.clone(), draw(value, &mut rng))).collect())
        .collect()
}

fn draw(value: &HyperValue, rng: &mut ChaCha8Rng) -> f64 {
    match value {
        HyperValue::Fixed(v) => *v,
        HyperValue::Space(space) => draw_one(space, rng),
    }
}

/// A draw from `space`, uniform over it (in log space for `log_uniform`).
pub(super) fn draw_one(space: &Space, rng: &mut ChaCha8Rng) -> f64 {
    // 53 random bits: a uniform double in [0, 1).
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    match space {
        Space::Choice(values) => {
            let index = ((unit() * values.len() as f64) as usize).min(values.len().saturating_sub(1));
            values.get(index).copied().unwrap_or_default()
        }
        Space::Uniform([low, high]) => low + (high - low) * unit(),
        Space::LogUniform([low, high]) => (low.ln() + (high.ln() - low.ln()) * unit()).exp(),
        Space::IntUniform([low, high]) => {
            let span = (high - low) as f64 + 1.0;
            (*low as f64 + (unit() * span).floor()).min(*high as f64)
        }
    }
}

/// Whether `epoch` is one of ASHA's rungs: `grace × factor^k`, short of the last epoch.
pub fn is_rung(asha: &Asha, epoch: u32, epochs: u32) -> bool {
    let mut rung = u64::from(asha.grace_epochs);
    while rung < u64::from(epochs) {
        if rung == u64::from(epoch) {
            return true;
        }
        rung = rung.saturating_mul(u64::from(asha.reduction_factor));
    }
    false
}

/// ASHA's decision for a trial with objective `mine` at a rung where the
/// trials so far (itself included) recorded `recorded`: it goes on when it
/// is in the top `1 / reduction_factor`, as in Ray Tune's `ASHAScheduler`
/// (the cutoff is that quantile of the recorded values, interpolated).
pub fn continues(asha: &Asha, mode: Mode, recorded: &[f64], mine: f64) -> bool {
    let mut values: Vec<f64> = recorded.iter().copied().filter(|v| v.is_finite()).collect();
    if values.is_empty() || !mine.is_finite() {
        return mine.is_finite();
    }
    if mode == Mode::Min {
        values.iter_mut().for_each(|v| *v = -*v);
    }
    let mine = if mode == Mode::Min { -mine } else { mine };
    values.sort_by(f64::total_cmp);
    let quantile = 1.0 - 1.0 / f64::from(asha.reduction_factor);
    let position = quantile * (values.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let cutoff = values[low] + (values[high] - values[low]) * (position - low as f64);
    mine >= cutoff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> JobSpec {
        let mut base = serde_json::json!({"function": "f", "dataset": "d", "epochs": 9});
        if let (Some(base), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            base.extend(extra.clone());
        }
        let parsed = serde_json::from_value(base);
        assert!(parsed.is_ok(), "bad test spec: {parsed:?}");
        parsed.unwrap_or_else(|_| JobSpec {
            function: String::new(),
            dataset: String::new(),
            epochs: 0,
            batch_size: 0,
            steps_per_call: 0,
            seed: 0,
            config: serde_json::Value::Null,
            hyper: BTreeMap::new(),
            search: crate::api::jobs::Search::default(),
            objective: crate::api::jobs::Objective::default(),
            checkpoint_every_epochs: 0,
            max_runtime_s: None,
            max_retries: 0,
            export: None,
        })
    }

    /// The drawn trials of `spec` (none left for later).
    fn drawn(spec: &JobSpec) -> Vec<BTreeMap<String, f64>> {
        trials(spec).unwrap_or_default().into_iter().flatten().collect()
    }

    #[test]
    fn random_search_is_seeded_and_stays_in_its_spaces() {
        let s = spec(serde_json::json!({
            "hyper": {"lr": {"log_uniform": [0.001, 0.5]}, "m": {"choice": [0.0, 0.9]}, "h": {"int_uniform": [2, 4]}, "x": 3.0},
            "search": {"trials": 50}
        }));
        let (a, b) = (drawn(&s), drawn(&s));
        assert_eq!(a.len(), 50);
        assert_eq!(a, b, "the same seed draws the same trials");
        for t in &a {
            assert!((0.001..=0.5).contains(&t["lr"]), "{t:?}");
            assert!(t["m"] == 0.0 || t["m"] == 0.9);
            assert!([2.0, 3.0, 4.0].contains(&t["h"]));
            assert_eq!(t["x"], 3.0);
        }
        assert!(a.iter().any(|t| t["h"] == 2.0) && a.iter().any(|t| t["h"] == 4.0), "both ends are drawn");
        let other = spec(serde_json::json!({"seed": 1, "hyper": {"lr": {"uniform": [0, 1]}}, "search": {"trials": 5}}));
        assert_ne!(
            trials(&other).unwrap_or_default(),
            trials(&spec(serde_json::json!({"hyper": {"lr": {"uniform": [0, 1]}}, "search": {"trials": 5}})))
                .unwrap_or_default()
        );
    }

    #[test]
    fn a_grid_is_every_combination() {
        let s = spec(serde_json::json!({
            "hyper": {"a": {"choice": [1, 2]}, "b": {"choice": [10, 20, 30]}}, "search": {"method": "grid", "trials": 6}
        }));
        let t = drawn(&s);
        assert_eq!(t.len(), 6);
        assert_eq!((t[0]["a"], t[0]["b"], t[5]["a"], t[5]["b"]), (1.0, 10.0, 2.0, 30.0));
        let too_many =
            spec(serde_json::json!({"hyper": {"a": {"choice": [1, 2]}}, "search": {"method": "grid", "trials": 3}}));
        assert!(matches!(trials(&too_many), Err(JobError::BadSpec { field, .. }) if field == "search.trials"));
    }

    #[test]
    fn bad_specs_name_their_field() {
        for (json, field) in [
            (serde_json::json!({"epochs": 0}), "epochs"),
            (serde_json::json!({"steps_per_call": 0}), "steps_per_call"),
            (serde_json::json!({"steps_per_call": 4097}), "steps_per_call"),
            (serde_json::json!({"epochs": 100_000, "search": {"trials": 11}}), "search.trials"),
            (serde_json::json!({"hyper": {"lr": {"log_uniform": [0, 1]}}}), "hyper.lr"),
            (serde_json::json!({"hyper": {"lr": {"uniform": [2, 1]}}}), "hyper.lr"),
            (serde_json::json!({"objective": {"metric": "accuracy", "mode": "max"}}), "objective.metric"),
            (
                serde_json::json!({"search": {"early_stopping": {"asha": {"reduction_factor": 1}}}}),
                "search.early_stopping.asha.reduction_factor",
            ),
        ] {
            let result = trials(&spec(json.clone()));
            assert!(matches!(&result, Err(JobError::BadSpec { field: f, .. }) if f == field), "{json}: {result:?}");
        }
    }

    #[test]
    fn tpe_draws_its_startup_trials_up_front_and_the_rest_later() {
        let s =
            spec(serde_json::json!({"hyper": {"lr": {"uniform": [0, 1]}}, "search": {"method": "tpe", "trials": 12}}));
        let t = trials(&s).unwrap_or_default();
        assert_eq!(t.len(), 12);
        assert_eq!(t.iter().filter(|h| h.is_some()).count(), 4);
        assert!(t[..4].iter().all(Option::is_some) && t[4..].iter().all(Option::is_none));
    }

    #[test]
    fn asha_keeps_the_top_third_at_its_rungs() {
        let asha = Asha { grace_epochs: 1, reduction_factor: 3 };
        assert!(is_rung(&asha, 1, 9) && is_rung(&asha, 3, 9) && !is_rung(&asha, 2, 9) && !is_rung(&asha, 9, 9));
        assert!(continues(&asha, Mode::Max, &[0.5], 0.5), "the first at a rung goes on");
        let recorded = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
        assert!(continues(&asha, Mode::Max, &recorded, 0.9));
        assert!(!continues(&asha, Mode::Max, &recorded, 0.5));
        assert!(continues(&asha, Mode::Min, &recorded, 0.1));
        assert!(!continues(&asha, Mode::Min, &recorded, 0.5));
        assert!(!continues(&asha, Mode::Min, &recorded, f64::NAN), "a diverged trial stops");
    }
}
