//! The muon side of `scripts/bench-datasets.sh`: one dataset build of a file,
//! as `PUT /v1/datasets/{name}` runs it below HTTP (`muon::datasets::build`),
//! timed, with the process's peak memory. Prints one JSON line like the
//! pandas side.
//!
//!     dataset-bench CSV OUT_PARQUET QUERY
//!
//! QUERY is the PUT's query string (`label=label&categorical=...`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use muon::api::DatasetOptions;
use muon::datasets::{Format, build};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output, query] = &args[..] else { bail!("usage: dataset-bench CSV OUT_PARQUET QUERY") };
    let options = DatasetOptions::parse(query)?;
    let start = Instant::now();
    let report = build(Path::new(input), Format::Csv, &options, None, Path::new(output))?;
    let seconds = start.elapsed().as_secs_f64();
    let megabytes = report.bytes_read as f64 / 1e6;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    let line = serde_json::json!({
        "tool": "muon",
        "rows": report.rows.kept,
        "seconds": seconds,
        "mb_per_s": megabytes / seconds,
        "peak_mb": peak_kb / 1024.0,
    });
    println!("{line}");
    Ok(())
}
