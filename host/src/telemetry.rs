//! Logs (`tracing`) and metrics (`metrics` with a Prometheus exporter).

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide metrics recorder and returns the handle that
/// renders `/metrics`.
///
/// Request latency is a histogram with fixed buckets (aggregatable across
/// nodes); instantiation time and queue waits are summaries with quantiles,
/// which is what one wants to read off a single node.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const LATENCY_BUCKETS: &[f64] =
        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("muon_request_duration_seconds".into()), LATENCY_BUCKETS)
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics::describe_counter!("muon_requests_total", "Function requests by function and outcome");
    metrics::describe_histogram!("muon_request_duration_seconds", "Function request latency");
    metrics::describe_histogram!("muon_instantiate_seconds", "Time to instantiate a fresh instance");
    metrics::describe_gauge!("muon_instances_in_flight", "Instances running now, by function");
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
    Ok(handle)
}

/// Structured logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Metric handles of one function, registered once per version so the
/// request path does no registry lookups for the common outcome.
pub struct FunctionMetrics {
    label: String,
    ok: metrics::Counter,
    duration: metrics::Histogram,
    in_flight: metrics::Gauge,
    tenant_requests: metrics::Counter,
    tenant_cost: metrics::Counter,
}

impl FunctionMetrics {
    /// Handles labelled with `function = label` (`tenant/name`) and, for the
    /// per-tenant totals, `tenant` alone, so cardinality grows with tenants and
    /// functions, never with requests.
    pub fn new(label: &str, tenant: &str) -> Self {
        Self {
            tenant_requests: metrics::counter!("muon_tenant_requests_total", "tenant" => tenant.to_owned()),
            tenant_cost: metrics::counter!("muon_tenant_cost_micros_total", "tenant" => tenant.to_owned()),
            label: label.to_owned(),
            ok: metrics::counter!("muon_requests_total", "function" => label.to_owned(), "outcome" => "ok"),
            duration: metrics::histogram!("muon_request_duration_seconds", "function" => label.to_owned()),
            in_flight: metrics::gauge!("muon_instances_in_flight", "function" => label.to_owned()),
        }
    }

    /// Counts a finished request; `error_code` is `None` on success.
    pub fn record(&self, started: std::time::Instant, error_code: Option<&'static str>) {
        match error_code {
            None => self.ok.increment(1),
            Some(code) => {
                metrics::counter!("muon_requests_total", "function" => self.label.clone(), "outcome" => code)
                    .increment(1);
            }
        }
        self.duration.record(started.elapsed().as_secs_f64());
        self.tenant_requests.increment(1);
    }

    /// Adds a request's cost to its tenant's total.
    pub fn record_cost(&self, cost_micros: i64) {
        self.tenant_cost.increment(u64::try_from(cost_micros).unwrap_or(0));
    }

    /// Counts an instance as running until the guard is dropped.
    pub fn instance_running(&self) -> InFlight {
        self.in_flight.increment(1.0);
        InFlight(self.in_flight.clone())
    }
}

/// An instance counted in `muon_instances_in_flight`, cancellation included.
pub struct InFlight(metrics::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
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
        hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
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
