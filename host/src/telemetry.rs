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
