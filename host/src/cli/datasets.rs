//! `muon datasets ...`: push a file as a dataset (with a progress bar for the
//! upload and a spinner while the server builds it), list, show, delete.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::{ClientArgs, print_or, send, short_digest};
use crate::api::datasets::DatasetQuery;
use crate::api::{DatasetList, DatasetReport, Deleted};

/// The dataset commands.
#[derive(Debug, Subcommand)]
pub(super) enum DatasetsCommand {
    /// Upload FILE (.csv, .jsonl or .parquet) as the next version of dataset NAME, then print its report.
    Push(Box<PushArgs>),
    /// Show dataset NAME's report (the latest version, or --version N).
    Show {
        name: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Delete dataset NAME, every version.
    Delete { name: String },
}

/// `muon datasets push`'s arguments.
#[derive(Debug, Args)]
pub(super) struct PushArgs {
    name: String,
    file: PathBuf,
    /// The label column.
    #[arg(long)]
    label: Option<String>,
    /// Feature columns, comma-separated [default: every other column].
    #[arg(long)]
    features: Option<String>,
    /// Train, validation and test fractions, e.g. 0.8,0.1,0.1 [default: 0.8,0.1,0.1].
    #[arg(long)]
    split: Option<String>,
    /// Seed of the split [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Keep the label's class proportions in every split.
    #[arg(long)]
    stratify: bool,
    /// Rows with a missing value: drop, mean, median or error [default: error].
    #[arg(long)]
    missing: Option<String>,
    /// Drop repeated rows.
    #[arg(long)]
    dedupe: bool,
    /// none, zscore or minmax [default: none].
    #[arg(long)]
    normalize: Option<String>,
    /// Categorical columns, comma-separated.
    #[arg(long)]
    categorical: Option<String>,
    /// A preprocessor function to run on every record.
    #[arg(long)]
    preprocess: Option<String>,
    /// Bad rows tolerated (skipped and reported) [default: 0].
    #[arg(long)]
    max_bad_rows: Option<u64>,
}

/// Runs `muon datasets [COMMAND]`.
pub(super) async fn run(command: Option<DatasetsCommand>, client: &ClientArgs) -> anyhow::Result<()> {
    let http = client.http()?;
    match command {
        Some(DatasetsCommand::Push(args)) => {
            let PushArgs {
                name,
                file,
                label,
                features,
                split,
                seed,
                stratify,
                missing,
                dedupe,
                normalize,
                categorical,
                preprocess,
                max_bad_rows,
            } = *args;
            let query = DatasetQuery {
                label,
                features,
                split,
                seed,
                stratify: stratify.then_some(true),
                missing,
                dedupe: dedupe.then_some(true),
                normalize,
                categorical,
                preprocess,
                max_bad_rows,
            };
            let report = push(client, &http, &name, &file, &query).await?;
            print_or(client, &report, || report_text(&report))
        }
        Some(DatasetsCommand::Show { name, version }) => {
            let mut request = http.get(format!("{}/v1/datasets/{name}", client.server));
            if let Some(version) = version {
                request = request.query(&[("version", version)]);
            }
            let report: DatasetReport = send(request).await?;
            print_or(client, &report, || report_text(&report))
        }
        Some(DatasetsCommand::Delete { name }) => {
            let out: Deleted = send(http.delete(format!("{}/v1/datasets/{name}", client.server))).await?;
            print_or(client, &out, || format!("deleted dataset {} (every version)", out.deleted))
        }
        None => {
            let out: DatasetList = send(http.get(format!("{}/v1/datasets", client.server))).await?;
            print_or(client, &out, || {
                let mut lines = vec![format!(
                    "{:<24} {:>7} {:>10} {:>21} {:>12}  {}",
                    "NAME", "VERSION", "ROWS", "TRAIN/VAL/TEST", "BYTES", "DIGEST"
                )];
                for d in &out.datasets {
                    let splits = format!("{}/{}/{}", d.splits.train, d.splits.validation, d.splits.test);
                    lines.push(format!(
                        "{:<24} {:>7} {:>10} {:>21} {:>12}  {}",
                        d.name,
                        d.version,
                        d.rows,
                        splits,
                        d.size,
                        short_digest(d.digest.trim_start_matches("sha256:")),
                    ));
                }
                lines.join("\n")
            })
        }
    }
}

/// Streams `file` to the server with a progress bar, then waits (with a
/// spinner) for the build and answers its report.
async fn push(
    client: &ClientArgs,
    http: &reqwest::Client,
    name: &str,
    file: &Path,
    query: &DatasetQuery,
) -> anyhow::Result<DatasetReport> {
    let content_type = content_type(file)?;
    let opened = tokio::fs::File::open(file).await.with_context(|| format!("cannot read {}", file.display()))?;
    let size = opened.metadata().await?.len();
    let quiet = client.json;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
    bar.set_style(
        ProgressStyle::with_template("uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .context("progress template")?,
    );
    let counted = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(opened).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counted.inc(chunk.len() as u64);
        }
    });
    let request = http
        .put(format!("{}/v1/datasets/{name}", client.server))
        .query(query)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream));
    let spinner = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    let watcher = {
        let (bar, spinner) = (bar.clone(), spinner.clone());
        tokio::spawn(async move {
            // The upload is done when every byte went; the server then builds.
            while bar.position() < size {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bar.finish_and_clear();
            spinner.set_message("cleaning, splitting and describing on the server...");
            spinner.enable_steady_tick(Duration::from_millis(120));
        })
    };
    let answer = send(request).await;
    watcher.abort();
    bar.finish_and_clear();
    spinner.finish_and_clear();
    answer
}

/// The content type of a data file, from its extension.
fn content_type(file: &Path) -> anyhow::Result<&'static str> {
    match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => Ok("text/csv"),
        Some("jsonl" | "ndjson") => Ok("application/x-ndjson"),
        Some("parquet") => Ok("application/vnd.apache.parquet"),
        _ => anyhow::bail!("{}: name the file .csv, .jsonl or .parquet so its format is known", file.display()),
    }
}

/// The report as a few tables for people.
fn report_text(report: &DatasetReport) -> String {
    let rows = &report.rows;
    let mut lines = vec![
        format!(
            "dataset {} version {} ({} bytes stored, digest {})",
            report.name,
            report.version,
            report.size,
            short_digest(report.digest.trim_start_matches("sha256:"))
        ),
        format!(
            "rows: {} read, {} kept, {} bad, {} with missing values dropped, {} duplicates dropped",
            rows.read, rows.kept, report.bad_rows.count, rows.dropped_missing, rows.deduplicated
        ),
        format!(
            "split: {} train, {} validation, {} test",
            report.splits.train, report.splits.validation, report.splits.test
        ),
        String::new(),
        format!(
            "{:<24} {:<12} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9}",
            "COLUMN", "TYPE", "MISSING", "MIN", "MAX", "MEAN", "STD", "DISTINCT"
        ),
    ];
    for column in &report.columns {
        let stat = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.6}"));
        let numeric = column.stats.as_ref();
        lines.push(format!(
            "{:<24} {:<12} {:>8} {:>12} {:>12} {:>12} {:>12} {:>9}",
            column.name,
            format!("{:?}", column.kind).to_lowercase(),
            column.missing,
            stat(numeric.map(|s| s.min)),
            stat(numeric.map(|s| s.max)),
            stat(numeric.map(|s| s.mean)),
            stat(numeric.and_then(|s| s.std)),
            if column.distinct_capped { format!("{}+", column.distinct) } else { column.distinct.to_string() },
        ));
    }
    for bad in report.bad_rows.first.iter().take(10) {
        let at = match (bad.line, bad.row) {
            (Some(line), _) => format!("line {line}"),
            (None, Some(row)) => format!("row {row}"),
            (None, None) => "a record".to_owned(),
        };
        lines.push(format!("bad row at {at}: {}", bad.reason));
    }
    lines.join("\n")
}
