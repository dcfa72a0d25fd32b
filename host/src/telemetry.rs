//! Logs (`tracing`) and metrics (`metrics` with a Prometheus exporter).
//!
//! Per-function series (requests by outcome, latency, instances running) are
//! kept here rather than in the exporter's registry, which cannot forget a
//! key: a function's series exist while a version of it is loaded and go
//! when it is deleted, so `/metrics` does not grow with every function ever
//! deployed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Upper bounds (seconds) of the request latency histogram: fixed, so that
/// nodes' histograms aggregate.
const LATENCY_BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every metric of the process, rendered for `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    exporter: PrometheusHandle,
}

impl Metrics {
    /// The Prometheus text exposition: the exporter's series, then the
    /// per-function ones.
    pub fn render(&self) -> String {
        let mut text = self.exporter.render();
        render_function_series(&mut text);
        render_alert_series(&mut text);
        text
    }
}

/// Installs the process-wide metrics recorder and returns what renders
/// `/metrics`.
///
/// Instantiation time and queue waits are summaries with quantiles, which is
/// what one wants to read off a single node.
pub fn install_metrics() -> anyhow::Result<Metrics> {
    let handle = PrometheusBuilder::new().install_recorder().context("cannot install the metrics recorder")?;
    metrics::describe_histogram!("muon_instantiate_seconds", "Time to instantiate a fresh instance");
    metrics::describe_histogram!("muon_queue_wait_seconds", "Time requests waited for a concurrency slot");
    metrics::describe_counter!("muon_compile_cache_total", "Compiled-artifact cache hits and misses");
    // Summaries keep a rolling window; upkeep drains it so memory stays flat.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            interval.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(Metrics { exporter: handle })
}

/// Structured logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The live functions' series by label. Weak, so that the series go with
/// the last loaded version of a function, wherever it was removed (a delete
/// here, or one on another node picked up from a shared database).
static FUNCTION_SERIES: LazyLock<Mutex<HashMap<String, Weak<FunctionSeries>>>> = LazyLock::new(Default::default);

fn function_series() -> std::sync::MutexGuard<'static, HashMap<String, Weak<FunctionSeries>>> {
    FUNCTION_SERIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the series of a deleted function at once, even while requests of
/// it are still running (what they record then is not shown).
pub fn forget_function(label: &str) {
    function_series().remove(label);
}

/// What one function has done: requests by outcome, latency, instances running.
#[derive(Default)]
struct FunctionSeries {
    ok: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests per latency bucket (not cumulative); slower ones only count.
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    count: AtomicU64,
    in_flight: AtomicI64,
}

/// Metric handles of one function, shared by its versions, so the request
/// path does no lookups.
pub struct FunctionMetrics {
    series: Arc<FunctionSeries>,
    tenant_requests: metrics::Counter,
    tenant_cost: metrics::Counter,
}

impl FunctionMetrics {
    /// Handles labelled with `function = label` (`tenant/name`) and, for the
    /// per-tenant totals, `tenant` alone, so cardinality grows with tenants and
    /// live functions, never with requests or deleted functions.
    pub fn new(label: &str, tenant: &str) -> Self {
        let mut table = function_series();
        table.retain(|_, series| series.strong_count() > 0);
        let series = match table.get(label).and_then(Weak::upgrade) {
            Some(series) => series,
            None => {
                let series = Arc::new(FunctionSeries::default());
                table.insert(label.to_owned(), Arc::downgrade(&series));
                series
            }
        };
        Self {
            series,
            tenant_requests: metrics::counter!("muon_tenant_requests_total", "tenant" => tenant.to_owned()),
            tenant_cost: metrics::counter!("muon_tenant_cost_micros_total", "tenant" => tenant.to_owned()),
        }
    }

    /// Counts a finished request; `error_code` is `None` on success.
    pub fn record(&self, started: std::time::Instant, error_code: Option<&'static str>) {
        let series = &self.series;
        match error_code {
            None => {
                series.ok.fetch_add(1, Ordering::Relaxed);
            }
            Some(code) => *series.errors.lock().unwrap_or_else(PoisonError::into_inner).entry(code).or_default() += 1,
        }
        let elapsed = started.elapsed();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&bound| elapsed.as_secs_f64() <= bound) {
            series.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        series.latency_sum_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        series.count.fetch_add(1, Ordering::Relaxed);
        self.tenant_requests.increment(1);
    }

    /// Adds a request's cost to its tenant's total.
    pub fn record_cost(&self, cost_micros: i64) {
        self.tenant_cost.increment(u64::try_from(cost_micros).unwrap_or(0));
    }

    /// Counts an instance as running until the guard is dropped.
    pub fn instance_running(&self) -> InFlight {
        self.series.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.series))
    }
}

/// An instance counted in `muon_instances_in_flight`, cancellation included.
pub struct InFlight(Arc<FunctionSeries>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Appends the live functions' series, in Prometheus text format.
fn render_function_series(out: &mut String) {
    let mut live: Vec<(String, Arc<FunctionSeries>)> = {
        let mut table = function_series();
        table.retain(|_, series| series.strong_count() > 0);
        table.iter().filter_map(|(label, series)| Some((escape_label(label), series.upgrade()?))).collect()
    };
    if live.is_empty() {
        return;
    }
    live.sort_by(|a, b| a.0.cmp(&b.0));
    // Writing to a String cannot fail.
    let _ = render_series(out, &live);
}

fn render_series(out: &mut String, live: &[(String, Arc<FunctionSeries>)]) -> std::fmt::Result {
    writeln!(out, "# HELP muon_requests_total Function requests by function and outcome")?;
    writeln!(out, "# TYPE muon_requests_total counter")?;
    for (label, series) in live {
        writeln!(
            out,
            "muon_requests_total{{function=\"{label}\",outcome=\"ok\"}} {}",
            series.ok.load(Ordering::Relaxed)
        )?;
        for (code, count) in series.errors.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            writeln!(out, "muon_requests_total{{function=\"{label}\",outcome=\"{code}\"}} {count}")?;
        }
    }
    writeln!(out, "\n# HELP muon_request_duration_seconds Function request latency")?;
    writeln!(out, "# TYPE muon_request_duration_seconds histogram")?;
    for (label, series) in live {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&series.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            writeln!(out, "muon_request_duration_seconds_bucket{{function=\"{label}\",le=\"{bound}\"}} {cumulative}")?;
        }
        let count = series.count.load(Ordering::Relaxed);
        writeln!(out, "muon_request_duration_seconds_bucket{{function=\"{label}\",le=\"+Inf\"}} {count}")?;
        let sum = series.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        writeln!(out, "muon_request_duration_seconds_sum{{function=\"{label}\"}} {sum}")?;
        writeln!(out, "muon_request_duration_seconds_count{{function=\"{label}\"}} {count}")?;
    }
    writeln!(out, "\n# HELP muon_instances_in_flight Instances running now, by function")?;
    writeln!(out, "# TYPE muon_instances_in_flight gauge")?;
    for (label, series) in live {
        writeln!(out, "muon_instances_in_flight{{function=\"{label}\"}} {}", series.in_flight.load(Ordering::Relaxed))?;
    }
    writeln!(out)
}

/// A label value as the text format wants it.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Alerts by state, here rather than in the exporter for the same reason as
/// the functions' series: a `(tenant, detector)` that stops firing must leave
/// the gauge, not linger at 0. Both are always rendered, with their `HELP`,
/// so a scraper (and an alert rule) sees the names before the first alert.
#[derive(Default)]
struct AlertSeries {
    /// Alerts firing now, by `(tenant, detector)`, across nodes (from the database).
    firing: BTreeMap<(String, String), u64>,
    /// Transitions made by this node, by `(detector, state)`.
    transitions: BTreeMap<(String, &'static str), u64>,
}

static ALERT_SERIES: LazyLock<Mutex<AlertSeries>> = LazyLock::new(Default::default);

fn alert_series() -> std::sync::MutexGuard<'static, AlertSeries> {
    ALERT_SERIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts an alert this node fired (`state` = `firing`) or resolved (`resolved`).
pub fn count_alert_transition(detector: &str, state: &'static str) {
    *alert_series().transitions.entry((detector.to_owned(), state)).or_default() += 1;
}

/// Replaces the firing alerts' counts by `(tenant, detector)`.
pub fn set_alerts_firing(firing: BTreeMap<(String, String), u64>) {
    alert_series().firing = firing;
}

fn render_alert_series(out: &mut String) {
    let series = alert_series();
    // Writing to a String cannot fail.
    let _ = (|| -> std::fmt::Result {
        writeln!(out, "# HELP muon_alerts_firing Alerts firing now, by tenant and detector (all nodes)")?;
        writeln!(out, "# TYPE muon_alerts_firing gauge")?;
        for ((tenant, detector), count) in &series.firing {
            let (tenant, detector) = (escape_label(tenant), escape_label(detector));
            writeln!(out, "muon_alerts_firing{{tenant=\"{tenant}\",detector=\"{detector}\"}} {count}")?;
        }
        writeln!(out, "# HELP muon_alerts_total Alerts this node fired or resolved, by detector and state")?;
        writeln!(out, "# TYPE muon_alerts_total counter")?;
        for ((detector, state), count) in &series.transitions {
            let detector = escape_label(detector);
            writeln!(out, "muon_alerts_total{{detector=\"{detector}\",state=\"{state}\"}} {count}")?;
        }
        Ok(())
    })();
}

/// Request ids: unique across restarts and nodes (a random per-process
/// prefix) and cheap (a counter; no system call per request).
pub struct RequestIds {
    /// The random prefix, already in hex.
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher
            .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        hasher.write_u32(std::process::id());
        Self { prefix: format!("{:016x}", hasher.finish()), next: std::sync::atomic::AtomicU64::new(0) }
    }

    /// The next id: 32 lowercase hex digits.
    pub fn next(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // By hand rather than `format!`: this runs for every request, and the
        // formatting machinery showed in profiles.
        let mut id = String::with_capacity(32);
        id.push_str(&self.prefix);
        id.extend((0..16).rev().map(|nibble| char::from(HEX[((n >> (nibble * 4)) & 0xf) as usize])));
        id
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_series_live_while_a_version_of_it_does() {
        let label = "unit/series";
        let rendered = || {
            let mut text = String::new();
            render_function_series(&mut text);
            text
        };
        let first = FunctionMetrics::new(label, "unit");
        let second = FunctionMetrics::new(label, "unit");
        first.record(std::time::Instant::now(), None);
        second.record(std::time::Instant::now(), Some("trap"));
        let running = second.instance_running();
        let text = rendered();
        assert!(text.contains("muon_requests_total{function=\"unit/series\",outcome=\"ok\"} 1"), "{text}");
        assert!(
            text.contains("muon_requests_total{function=\"unit/series\",outcome=\"trap\"} 1"),
            "versions share series: {text}"
        );
        assert!(
            text.contains("muon_request_duration_seconds_bucket{function=\"unit/series\",le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("muon_instances_in_flight{function=\"unit/series\"} 1"), "{text}");
        drop(running);
        drop((first, second));
        assert!(!rendered().contains("unit/series"), "gone with the last version");

        let third = FunctionMetrics::new(label, "unit");
        assert!(rendered().contains("unit/series"));
        forget_function(label);
        assert!(!rendered().contains("unit/series"), "gone at delete, though a version is still held");
        drop(third);
    }

    #[test]
    fn alert_series_are_named_before_any_alert_and_go_when_it_stops() {
        let rendered = || {
            let mut text = String::new();
            render_alert_series(&mut text);
            text
        };
        let text = rendered();
        assert!(text.contains("# TYPE muon_alerts_firing gauge") && text.contains("# TYPE muon_alerts_total counter"));
        set_alerts_firing(BTreeMap::from([(("unit".to_owned(), "unit_detector".to_owned()), 2)]));
        count_alert_transition("unit_detector", "firing");
        let text = rendered();
        assert!(text.contains("muon_alerts_firing{tenant=\"unit\",detector=\"unit_detector\"} 2"), "{text}");
        assert!(text.contains("muon_alerts_total{detector=\"unit_detector\",state=\"firing\"} 1"), "{text}");
        set_alerts_firing(BTreeMap::new());
        assert!(!rendered().contains("muon_alerts_firing{tenant=\"unit\""), "no longer firing: gone");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn request_ids_are_32_hex_digits_with_a_counter() {
        let ids = RequestIds::new();
        let (first, second) = (ids.next(), ids.next());
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(first[..16], second[..16], "one prefix per process");
        assert_eq!(&first[16..], "0000000000000000");
        assert_eq!(&second[16..], "0000000000000001");
    }
}
