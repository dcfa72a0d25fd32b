//! Anomaly detectors, run once per closed window over every series.
//!
//! Each compares the window just closed with a robust baseline of the
//! function's (or model's) recent windows: the median and the median
//! absolute deviation (MAD) of up to `BASELINE_WINDOWS` windows that had at
//! least `min_requests` calls. A condition must hold for `for_windows`
//! windows in a row, each with enough calls, before the alert fires (as
//! Prometheus' `for`), and the baseline is frozen while it fires, so a
//! version that stays bad does not become its own baseline. It resolves
//! at the first window with enough calls where the condition is gone.
//!
//! - `error_rate` (per function version): the share of calls failed by the
//!   function is above the baseline's median by more than both
//!   `error_rate_increase` and three scaled MADs;
//! - `latency_p99` (per function version) and `model_compute` (per model
//!   version): the window's p99 is above `latency_ratio` times the
//!   baseline's median p99, and above it by three scaled MADs and at least
//!   5 ms;
//! - `rate_drop` (per function): calls stop (for `for_windows` windows)
//!   after a baseline of at least `min_requests` per window;
//! - `rate_spike` (per function): calls are over `rate_spike_ratio` times
//!   the baseline's median (and over `min_requests`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::api::AlertLabels;
use crate::stats::{Series, SeriesKind, Window};

use super::rollout::{LATENCY_FLOOR_MS, function_faults};
use super::{Firing, Limits, Monitor};

/// Windows the baseline reaches back over (5 minutes of 10 s windows).
const BASELINE_WINDOWS: i64 = 30;
/// Windows with enough calls a baseline needs before a detector judges.
const MIN_BASELINE_WINDOWS: usize = 3;
/// Scales a MAD to a standard deviation of normal data.
const MAD_SCALE: f64 = 1.4826;

/// A function or a model of a tenant: the series of its versions are judged together.
type Subject = (SeriesKind, Arc<str>, Arc<str>);

/// What a detector keeps between windows for one subject.
#[derive(Debug, Clone, Default)]
pub(super) struct Track {
    /// Windows in a row the condition held.
    held: u32,
    /// The baseline frozen when the alert fired, while it fires.
    frozen: Option<f64>,
}

/// The median and the scaled MAD of `values`.
fn median_mad(values: &mut [f64]) -> (f64, f64) {
    let median = median(values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    (median, median_of(&mut deviations) * MAD_SCALE)
}

fn median(values: &mut [f64]) -> f64 {
    median_of(values)
}

fn median_of(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { f64::midpoint(values[middle - 1], values[middle]) }
}

/// One window's verdict for one detector and subject.
struct Verdict {
    labels: AlertLabels,
    /// `None`: not enough calls to judge either way.
    holds: Option<bool>,
    value: f64,
    baseline: f64,
    summary: String,
}

/// The windows of a function (every version merged) or a model, by start.
fn by_start(series: &[Arc<Series>], from_ms: i64, to_ms: i64) -> BTreeMap<i64, Window> {
    let mut merged: BTreeMap<i64, Window> = BTreeMap::new();
    for one in series {
        for window in one.windows(from_ms, to_ms) {
            merged.entry(window.start_ms).or_insert_with(|| Window::empty(window.start_ms)).merge(&window);
        }
    }
    merged
}

impl Monitor {
    /// Runs every detector over the window that starts at `closed_ms`.
    pub(super) async fn detect(&self, closed_ms: i64) {
        let window_ms = self.stats.window_ms();
        let mut groups: HashMap<Subject, Vec<Arc<Series>>> = HashMap::new();
        for series in self.stats.all() {
            let key = series.key();
            groups.entry((key.kind, Arc::clone(&key.tenant), Arc::clone(&key.name))).or_default().push(series);
        }
        let mut verdicts = Vec::new();
        for ((kind, tenant, name), series) in groups {
            let limits = match kind {
                SeriesKind::Function => self.thresholds.effective(&tenant, &name),
                SeriesKind::Model => self.thresholds.effective(&tenant, ""),
            };
            let history = by_start(&series, closed_ms - BASELINE_WINDOWS * window_ms, closed_ms);
            let baseline: Vec<&Window> = history.values().filter(|w| w.requests >= limits.min_requests).collect();
            for one in &series {
                let current = one.merged(closed_ms, closed_ms + window_ms);
                let labels = |detector: &str| AlertLabels {
                    tenant: tenant.to_string(),
                    detector: detector.to_owned(),
                    function: (kind == SeriesKind::Function).then(|| name.to_string()),
                    model: (kind == SeriesKind::Model).then(|| name.to_string()),
                    version: Some(one.key().version),
                    feature: None,
                };
                if kind == SeriesKind::Function {
                    let labels = labels("error_rate");
                    let frozen = self.frozen_baseline(&labels);
                    verdicts.push(error_rate(labels, &current, &baseline, frozen, &limits));
                }
                let labels = labels(if kind == SeriesKind::Function { "latency_p99" } else { "model_compute" });
                let frozen = self.frozen_baseline(&labels);
                verdicts.push(latency(labels, &current, &baseline, frozen, &limits));
            }
            if kind == SeriesKind::Function {
                let current = by_start(&series, closed_ms, closed_ms + window_ms)
                    .remove(&closed_ms)
                    .unwrap_or_else(|| Window::empty(closed_ms));
                let labels = |detector: &str| AlertLabels {
                    tenant: tenant.to_string(),
                    detector: detector.to_owned(),
                    function: Some(name.to_string()),
                    ..AlertLabels::default()
                };
                let span = history.keys().next().map_or(0, |first| (closed_ms - first) / window_ms);
                verdicts.extend(rate(&labels, current.requests, &history, usize::try_from(span).unwrap_or(0), &limits));
            }
        }
        for verdict in verdicts {
            self.apply(verdict).await;
        }
    }

    /// Counts a verdict toward its condition, and fires or resolves.
    async fn apply(&self, verdict: Verdict) {
        let Some(holds) = verdict.holds else { return };
        let key = verdict.labels.clone();
        let (fire, resolve, frozen) = {
            let mut tracks = self.tracks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let for_windows =
                self.thresholds.effective(&key.tenant, key.function.as_deref().unwrap_or_default()).for_windows;
            let track = tracks.entry(key.clone()).or_default();
            if holds {
                track.held += 1;
            } else {
                track.held = 0;
            }
            let fire = holds && track.held >= for_windows && track.frozen.is_none();
            let resolve = !holds && track.frozen.is_some();
            if fire {
                track.frozen = Some(verdict.baseline);
            }
            if resolve {
                track.frozen = None;
            }
            if !holds && track.frozen.is_none() {
                tracks.remove(&key);
            }
            (fire, resolve, verdict.baseline)
        };
        let outcome = if fire {
            let firing = Firing { labels: key, value: verdict.value, baseline: frozen, summary: verdict.summary };
            self.alerts.fire(firing).await.map(drop)
        } else if resolve {
            self.alerts.resolve(&key).await.map(drop)
        } else {
            Ok(())
        };
        if let Err(err) = outcome {
            tracing::warn!(error = format!("{err:#}"), "cannot fire or resolve an alert");
        }
    }

    /// The baseline frozen for `labels`, if its alert fires.
    pub(super) fn frozen_baseline(&self, labels: &AlertLabels) -> Option<f64> {
        let tracks = self.tracks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tracks.get(labels).and_then(|track| track.frozen)
    }
}

fn error_rate(
    labels: AlertLabels,
    current: &Window,
    baseline: &[&Window],
    frozen: Option<f64>,
    limits: &Limits,
) -> Verdict {
    let mut rates: Vec<f64> = baseline.iter().map(|w| function_faults(w) as f64 / w.requests.max(1) as f64).collect();
    let (median, mad) = frozen.map_or_else(|| median_mad(&mut rates), |frozen| (frozen, 0.0));
    let rate = function_faults(current) as f64 / current.requests.max(1) as f64;
    let enough = current.requests >= limits.min_requests;
    let holds = enough.then_some(rate > median + limits.error_rate_increase.max(3.0 * mad));
    let summary = format!(
        "{}{} fails {:.1}% of its calls against a usual {:.1}%",
        labels.function.as_deref().unwrap_or_default(),
        labels.version.map(|v| format!(" version {v}")).unwrap_or_default(),
        rate * 100.0,
        median * 100.0
    );
    Verdict { labels, holds, value: rate, baseline: median, summary }
}

fn latency(
    labels: AlertLabels,
    current: &Window,
    baseline: &[&Window],
    frozen: Option<f64>,
    limits: &Limits,
) -> Verdict {
    let mut p99s: Vec<f64> = baseline.iter().map(|w| w.quantile_ms(0.99)).collect();
    let (median, mad) = frozen.map_or_else(|| median_mad(&mut p99s), |frozen| (frozen, 0.0));
    let p99 = current.quantile_ms(0.99);
    let judged = frozen.is_some() || baseline.len() >= MIN_BASELINE_WINDOWS;
    let enough = current.requests >= limits.min_requests && judged;
    let floor = median + (3.0 * mad).max(LATENCY_FLOOR_MS);
    let holds = enough.then_some(p99 > median * limits.latency_ratio && p99 > floor);
    let what = labels.function.as_deref().or(labels.model.as_deref()).unwrap_or_default().to_owned();
    let summary = format!(
        "{what}{}: p99 {} {p99:.1} ms against a usual {median:.1} ms",
        labels.version.map(|v| format!(" version {v}")).unwrap_or_default(),
        if labels.model.is_some() { "compute time" } else { "latency" },
    );
    Verdict { labels, holds, value: p99, baseline: median, summary }
}

fn rate(
    labels: &dyn Fn(&str) -> AlertLabels,
    current: u64,
    history: &BTreeMap<i64, Window>,
    windows_seen: usize,
    limits: &Limits,
) -> Vec<Verdict> {
    let counts: Vec<f64> = history.values().map(|w| w.requests as f64).collect();
    // Windows with no calls since the first one are absent: count them as zeros.
    let mut all = counts.clone();
    all.resize(windows_seen.max(counts.len()), 0.0);
    let steady: Vec<f64> = counts.iter().copied().filter(|&c| c >= limits.min_requests as f64).collect();
    let median_rate = median(&mut steady.clone());
    let name = labels("").function.unwrap_or_default();
    let mut verdicts = Vec::new();
    if limits.rate_drop {
        let judged = steady.len() >= MIN_BASELINE_WINDOWS;
        verdicts.push(Verdict {
            labels: labels("rate_drop"),
            holds: judged.then_some(current == 0),
            value: current as f64,
            baseline: median_rate,
            summary: format!("{name} stopped receiving calls; it usually has {median_rate:.0} per window"),
        });
    }
    let usual = median(&mut all);
    let judged = windows_seen >= MIN_BASELINE_WINDOWS;
    let spike = current as f64 > (usual.max(1.0) * limits.rate_spike_ratio).max(limits.min_requests as f64);
    verdicts.push(Verdict {
        labels: labels("rate_spike"),
        holds: judged.then_some(spike),
        value: current as f64,
        baseline: usual,
        summary: format!("{name} received {current} calls in a window; it usually has {usual:.0}"),
    });
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(counts: &[(i64, u64)]) -> BTreeMap<i64, Window> {
        counts
            .iter()
            .map(|&(start, calls)| {
                let mut window = Window::empty(start);
                for _ in 0..calls {
                    let mut one = Window::empty(start);
                    one.requests = 1;
                    window.merge(&one);
                }
                (start, window)
            })
            .collect()
    }

    fn labels(detector: &str) -> AlertLabels {
        AlertLabels {
            tenant: "t".to_owned(),
            detector: detector.to_owned(),
            function: Some("f".to_owned()),
            ..AlertLabels::default()
        }
    }

    #[test]
    fn a_steady_rate_neither_drops_nor_spikes() {
        let history = windows(&[(0, 100), (1, 110), (2, 90), (3, 105)]);
        let verdicts = rate(&labels, 100, &history, 4, &Limits::default());
        assert!(
            verdicts.iter().all(|v| v.holds == Some(false)),
            "{:?}",
            verdicts.iter().map(|v| v.holds).collect::<Vec<_>>()
        );
    }

    #[test]
    fn calls_stopping_is_a_drop_and_ten_times_the_usual_a_spike() {
        let history = windows(&[(0, 100), (1, 110), (2, 90), (3, 105)]);
        let stopped = rate(&labels, 0, &history, 4, &Limits::default());
        assert_eq!(
            stopped.iter().map(|v| (v.labels.detector.as_str(), v.holds)).collect::<Vec<_>>(),
            [("rate_drop", Some(true)), ("rate_spike", Some(false))]
        );
        let spiked = rate(&labels, 5000, &history, 4, &Limits::default());
        assert_eq!(spiked[1].holds, Some(true));
    }

    #[test]
    fn a_new_function_is_not_judged_on_its_rate() {
        let history = windows(&[(3, 100)]);
        let verdicts = rate(&labels, 5000, &history, 1, &Limits::default());
        assert!(verdicts.iter().all(|v| v.holds.is_none()));
    }

    #[test]
    fn median_and_mad_ignore_one_outlier() {
        let (median, mad) = median_mad(&mut [1.0, 1.1, 0.9, 1.0, 50.0]);
        assert!((median - 1.0).abs() < 1e-9);
        assert!(mad < 0.2, "{mad}");
    }
}
