//! Live statistics per function version and per model version, in
//! fixed-length windows (10 s by default) kept for 24 hours.
//!
//! Each series is recorded inline by the settle path (for calls) and by
//! wasi-nn (for computes) through the handle its owner keeps, so recording
//! costs one uncontended lock and no lookup. A window holds counters and a
//! DDSketch of latencies, mergeable across windows, so a query over any span
//! has true percentiles. A window exists only when its series had work in
//! it, so idle functions cost nothing; and the store as a whole keeps at most
//! `max_windows`, sharing them among its series, so memory is bounded
//! whatever the number of functions. Windows live in memory only: after a
//! restart the windows before it are empty, which `covered_from_ms` says.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use crate::api::ErrorCode;

/// Relative accuracy of the latency percentiles.
const SKETCH_ACCURACY: f64 = 0.02;
/// Bins a sketch may grow to: 2% accuracy over 1 µs .. 1 h takes fewer.
const SKETCH_MAX_BINS: u32 = 1024;
/// The smallest latency told apart from zero, in milliseconds.
const SKETCH_MIN_MS: f64 = 0.001;

/// What a series is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeriesKind {
    /// Calls of a function version.
    Function,
    /// Computes of a model version.
    Model,
}

/// The identity of a series: a version of a tenant's function or model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Function or model.
    pub kind: SeriesKind,
    /// The owning tenant.
    pub tenant: Arc<str>,
    /// The function's or model's name.
    pub name: Arc<str>,
    /// Its version.
    pub version: i64,
}

/// One unit of work, as a series records it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// The error code, or `None` for success.
    pub error: Option<ErrorCode>,
    /// Wall time (for a model: compute time).
    pub latency: Duration,
    /// Guest CPU time.
    pub cpu: Duration,
    /// wasi-nn compute time on CPU, in microseconds.
    pub nn_cpu_us: u64,
    /// wasi-nn compute time on GPU, in microseconds.
    pub nn_gpu_us: u64,
    /// What it cost, in micro-units.
    pub cost_micros: i64,
}

/// One window of a series.
#[derive(Clone)]
pub struct Window {
    /// Its start, in Unix milliseconds, a multiple of the window length.
    pub start_ms: i64,
    /// Work in it.
    pub requests: u64,
    /// Work that failed, by error code.
    pub errors: BTreeMap<ErrorCode, u64>,
    /// Latencies, in milliseconds.
    pub latency_ms: DDSketch,
    /// Guest CPU, in microseconds.
    pub cpu_us: u64,
    /// wasi-nn compute on CPU, in microseconds.
    pub nn_cpu_us: u64,
    /// wasi-nn compute on GPU, in microseconds.
    pub nn_gpu_us: u64,
    /// Cost, in micro-units.
    pub cost_micros: i64,
}

impl Window {
    fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            requests: 0,
            errors: BTreeMap::new(),
            latency_ms: new_sketch(),
            cpu_us: 0,
            nn_cpu_us: 0,
            nn_gpu_us: 0,
            cost_micros: 0,
        }
    }

    fn add(&mut self, sample: &Sample) {
        self.requests += 1;
        if let Some(code) = sample.error {
            *self.errors.entry(code).or_default() += 1;
        }
        self.latency_ms.add(sample.latency.as_secs_f64() * 1000.0);
        self.cpu_us += u64::try_from(sample.cpu.as_micros()).unwrap_or(u64::MAX);
        self.nn_cpu_us += sample.nn_cpu_us;
        self.nn_gpu_us += sample.nn_gpu_us;
        self.cost_micros += sample.cost_micros;
    }

    /// Work that failed, whatever the code.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The share of work that failed (0 when there was none).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.error_count() as f64 / self.requests as f64 }
    }

    /// The latency at quantile `q`, in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_ms.quantile(q).ok().flatten().unwrap_or(0.0)
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &Self) {
        self.requests += other.requests;
        for (code, count) in &other.errors {
            *self.errors.entry(*code).or_default() += count;
        }
        // Sketches made with the same configuration always merge.
        drop(self.latency_ms.merge(&other.latency_ms));
        self.cpu_us += other.cpu_us;
        self.nn_cpu_us += other.nn_cpu_us;
        self.nn_gpu_us += other.nn_gpu_us;
        self.cost_micros += other.cost_micros;
    }

    /// An empty window to merge others into.
    pub fn empty(start_ms: i64) -> Self {
        Self::new(start_ms)
    }

    /// The share of this window's work slower than `threshold_ms`, from
    /// the sketch (to its accuracy).
    pub fn share_slower_than(&self, threshold_ms: f64) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        // The sketch answers quantiles, so find the quantile at the threshold.
        let (mut low, mut high) = (0.0_f64, 1.0_f64);
        for _ in 0..24 {
            let middle = f64::midpoint(low, high);
            if self.quantile_ms(middle) <= threshold_ms { low = middle } else { high = middle }
        }
        1.0 - low
    }
}

fn new_sketch() -> DDSketch {
    DDSketch::new(SketchConfig::new(SKETCH_ACCURACY, SKETCH_MAX_BINS, SKETCH_MIN_MS))
}

/// A series' windows, newest last.
pub struct Series {
    key: SeriesKey,
    window_ms: i64,
    windows: Mutex<VecDeque<Window>>,
}

impl Series {
    /// What this series is about.
    pub fn key(&self) -> &SeriesKey {
        &self.key
    }

    /// Records one unit of work that ended now.
    pub fn record(&self, sample: &Sample) {
        self.record_at(crate::clock::now_ms(), sample);
    }

    /// Records one unit of work that ended at `now_ms`.
    pub fn record_at(&self, now_ms: i64, sample: &Sample) {
        let start_ms = now_ms - now_ms.rem_euclid(self.window_ms);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        match windows.back_mut() {
            Some(window) if window.start_ms == start_ms => window.add(sample),
            // A sample can end just before one already recorded in a newer
            // window (clocks of threads): it joins the window it ended in
            // if that is still kept, else the newest.
            Some(window) if window.start_ms > start_ms => {
                match windows.iter_mut().rev().find(|w| w.start_ms <= start_ms) {
                    Some(older) if older.start_ms == start_ms => older.add(sample),
                    _ => {
                        if let Some(newest) = windows.back_mut() {
                            newest.add(sample);
                        }
                    }
                }
            }
            _ => {
                let mut window = Window::new(start_ms);
                window.add(sample);
                windows.push_back(window);
            }
        }
    }

    /// Copies of the windows that start in `from_ms..to_ms`, oldest first.
    pub fn windows(&self, from_ms: i64, to_ms: i64) -> Vec<Window> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.iter().filter(|w| w.start_ms >= from_ms && w.start_ms < to_ms).cloned().collect()
    }

    /// The windows that start in `from_ms..to_ms`, merged into one.
    pub fn merged(&self, from_ms: i64, to_ms: i64) -> Window {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut merged = Window::empty(from_ms);
        for window in windows.iter().filter(|w| w.start_ms >= from_ms && w.start_ms < to_ms) {
            merged.merge(window);
        }
        merged
    }

    /// Keeps at most `keep` windows, none older than `oldest_ms`; returns how many remain.
    fn trim(&self, keep: usize, oldest_ms: i64) -> usize {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        while windows.front().is_some_and(|w| w.start_ms < oldest_ms) || windows.len() > keep {
            windows.pop_front();
        }
        windows.len()
    }

    fn window_count(&self) -> usize {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// How the store is sized.
#[derive(Debug, Clone, Copy)]
pub struct StatsSettings {
    /// Length of a window.
    pub window: Duration,
    /// How long windows are kept.
    pub retention: Duration,
    /// Windows kept in all, shared among the series.
    pub max_windows: usize,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self { window: Duration::from_secs(10), retention: Duration::from_secs(24 * 3600), max_windows: 200_000 }
    }
}

/// Every series of this node.
pub struct StatsStore {
    settings: StatsSettings,
    series: DashMap<SeriesKey, Arc<Series>>,
    started_ms: i64,
}

impl StatsStore {
    /// An empty store.
    pub fn new(settings: StatsSettings) -> Self {
        Self { settings, series: DashMap::new(), started_ms: crate::clock::now_ms() }
    }

    /// Its settings.
    pub fn settings(&self) -> StatsSettings {
        self.settings
    }

    /// The length of a window, in milliseconds.
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.settings.window.as_millis()).unwrap_or(i64::MAX).max(1)
    }

    /// When this store started: there are no windows before.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// The series of `key`, made on first use.
    pub fn series(&self, key: SeriesKey) -> Arc<Series> {
        let window_ms = self.window_ms();
        Arc::clone(
            self.series
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Series { key, window_ms, windows: Mutex::new(VecDeque::new()) }))
                .value(),
        )
    }

    /// The series of one function or model, every version, newest version first.
    pub fn versions(&self, kind: SeriesKind, tenant: &str, name: &str) -> Vec<Arc<Series>> {
        let mut found: Vec<Arc<Series>> = self
            .series
            .iter()
            .filter(|entry| {
                let key = entry.key();
                key.kind == kind && &*key.tenant == tenant && &*key.name == name
            })
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        found.sort_by_key(|series| std::cmp::Reverse(series.key.version));
        found
    }

    /// Every series.
    pub fn all(&self) -> Vec<Arc<Series>> {
        self.series.iter().map(|entry| Arc::clone(entry.value())).collect()
    }

    /// Forgets every version of a deleted function or model.
    pub fn forget(&self, kind: SeriesKind, tenant: &str, name: &str) {
        self.series.retain(|key, _| !(key.kind == kind && &*key.tenant == tenant && &*key.name == name));
    }

    /// Drops windows past the retention, and the oldest windows of each
    /// series beyond its share of `max_windows`; drops series left empty
    /// that nobody else holds. Returns the windows kept.
    pub fn trim(&self, now_ms: i64) -> usize {
        let retention_ms = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let per_series_cap = usize::try_from(retention_ms / self.window_ms()).unwrap_or(usize::MAX).max(1);
        let share = (self.settings.max_windows / self.series.len().max(1)).clamp(1, per_series_cap);
        let mut kept = 0;
        self.series.retain(|_, series| {
            let left = series.trim(share, now_ms.saturating_sub(retention_ms));
            kept += left;
            left > 0 || Arc::strong_count(series) > 1
        });
        kept
    }

    /// Windows held, in all.
    pub fn window_count(&self) -> usize {
        self.series.iter().map(|entry| entry.value().window_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: i64) -> SeriesKey {
        SeriesKey { kind: SeriesKind::Function, tenant: Arc::from("t"), name: Arc::from("f"), version }
    }

    fn sample(ms: u64, error: Option<ErrorCode>) -> Sample {
        Sample { error, latency: Duration::from_millis(ms), ..Sample::default() }
    }

    #[test]
    fn windows_hold_counts_and_true_percentiles() {
        let store = StatsStore::new(StatsSettings::default());
        let series = store.series(key(1));
        for i in 0..100 {
            let error = (i % 10 == 0).then_some(ErrorCode::Trap);
            series.record_at(5_000 + i, &sample(1 + i as u64, error));
        }
        series.record_at(15_000, &sample(500, None));
        let windows = series.windows(0, 20_000);
        assert_eq!(windows.iter().map(|w| (w.start_ms, w.requests)).collect::<Vec<_>>(), [(0, 100), (10_000, 1)]);
        assert_eq!(windows[0].errors.get(&ErrorCode::Trap), Some(&10));
        let p50 = windows[0].quantile_ms(0.5);
        assert!((p50 - 50.0).abs() <= 50.0 * 0.03, "{p50}");
        let merged = series.merged(0, 20_000);
        assert_eq!(merged.requests, 101);
        assert!((merged.quantile_ms(1.0) - 500.0).abs() <= 500.0 * 0.03);
        let slower = windows[0].share_slower_than(90.5);
        assert!((slower - 0.10).abs() < 0.03, "{slower}");
    }

    #[test]
    fn memory_is_shared_among_series_and_retention_is_kept() {
        let settings = StatsSettings { max_windows: 100, ..StatsSettings::default() };
        let store = StatsStore::new(settings);
        for version in 0..10 {
            let series = store.series(key(version));
            for window in 0..50 {
                series.record_at(window * 10_000, &sample(1, None));
            }
        }
        assert_eq!(store.window_count(), 500);
        assert_eq!(store.trim(50 * 10_000), 100, "10 series share 100 windows");
        let newest = store.series(key(3)).windows(0, i64::MAX);
        assert_eq!(newest.first().map(|w| w.start_ms), Some(40 * 10_000), "the oldest go first");
        let day_later = 50 * 10_000 + 24 * 3600 * 1000;
        store.trim(day_later);
        assert_eq!(store.window_count(), 0);
    }
}
