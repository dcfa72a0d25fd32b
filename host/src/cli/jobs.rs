//! `muon jobs ...`: submit a training job (and follow it live, one progress
//! bar per trial, from the job's Server-Sent Events), list, show, cancel and
//! delete jobs, print a job's report and its guests' logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ClientArgs, print_or, send, send_raw};
use crate::api::jobs::{Mode, Objective};
use crate::api::{Deleted, Job, JobCreated, JobEvent, JobList, JobLogs, JobReport, JobSpec, JobState, TrialState};

/// Reconnections in a row, without an event between them, before `--follow` gives up.
const MAX_RECONNECTS: u32 = 10;

/// The job commands.
#[derive(Debug, Subcommand)]
pub(super) enum JobsCommand {
    /// Submit the job in SPEC (JSON, as `POST /v1/jobs` takes it).
    Run {
        spec: PathBuf,
        /// Show a progress bar per trial until the job is over, then its report;
        /// exit non-zero unless it succeeded. Ctrl-C stops following, not the job.
        #[arg(long)]
        follow: bool,
    },
    /// Show job ID: its state and each trial's hyper-parameters, epoch and latest metrics.
    Show { id: String },
    /// Cancel job ID.
    Cancel { id: String },
    /// Delete job ID with its checkpoints, events and logs.
    Delete { id: String },
    /// Print job ID's report: a row per trial, the best one marked, and the test figures.
    Report {
        id: String,
        /// Also write the curves as SVG to FILE.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Print what job ID's guests wrote to stdout and stderr, per trial.
    Logs { id: String },
}

/// Runs `muon jobs [COMMAND]`.
pub(super) async fn run(command: Option<JobsCommand>, client: &ClientArgs) -> anyhow::Result<()> {
    let http = client.http()?;
    let job_url = |id: &str, rest: &str| format!("{}/v1/jobs/{id}{rest}", client.server);
    match command {
        None => {
            let out: JobList = send(http.get(format!("{}/v1/jobs", client.server))).await?;
            print_or(client, &out, || list_text(&out))
        }
        Some(JobsCommand::Run { spec, follow }) => submit(client, &http, &spec, follow).await,
        Some(JobsCommand::Show { id }) => {
            let job: Job = send(http.get(job_url(&id, ""))).await?;
            print_or(client, &job, || job_text(&job))
        }
        Some(JobsCommand::Cancel { id }) => {
            let job: Job = send(http.post(job_url(&id, "/cancel"))).await?;
            print_or(client, &job, || job_text(&job))
        }
        Some(JobsCommand::Delete { id }) => {
            let out: Deleted = send(http.delete(job_url(&id, ""))).await?;
            print_or(client, &out, || format!("deleted job {}", out.deleted))
        }
        Some(JobsCommand::Report { id, svg }) => {
            let report: JobReport = send(http.get(job_url(&id, "/report"))).await?;
            if let Some(file) = &svg {
                let bytes = send_raw(http.get(job_url(&id, "/report.svg"))).await?;
                std::fs::write(file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
            }
            print_or(client, &report, || report_text(&report))
        }
        Some(JobsCommand::Logs { id }) => {
            let logs: JobLogs = send(http.get(job_url(&id, "/logs"))).await?;
            print_or(client, &logs, || logs_text(&logs))
        }
    }
}

/// `muon jobs run`: the spec is read and checked here first, so a typo is
/// named with its line and column before anything is sent.
async fn submit(client: &ClientArgs, http: &reqwest::Client, file: &Path, follow: bool) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("cannot read the job spec {}", file.display()))?;
    let spec: JobSpec = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a job spec (see `POST /v1/jobs` in /v1/openapi.json)", file.display()))?;
    // The file as written goes to the server, which checks it again (and more).
    let request = http
        .post(format!("{}/v1/jobs", client.server))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(text);
    let created: JobCreated = send(request).await?;
    if !follow {
        return print_or(client, &created, || {
            format!(
                "submitted job {} ({}); `muon jobs show {}` to see it",
                created.id,
                created.state.as_str(),
                created.id
            )
        });
    }
    follow_events(client, http, &created.id, &spec).await?;
    let job_url = |rest: &str| format!("{}/v1/jobs/{}{rest}", client.server, created.id);
    let report: JobReport = send(http.get(job_url("/report"))).await?;
    print_or(client, &report, || report_text(&report))?;
    if report.state != JobState::Succeeded {
        let job: Job = send(http.get(job_url(""))).await?;
        let why = job.error.unwrap_or_else(|| "no reason given".to_owned());
        bail!("job {} {}: {why}", job.id, job.state.as_str());
    }
    Ok(())
}

/// Reads the job's event stream until the job is over, drawing a bar per
/// trial. A dropped connection is resumed with `Last-Event-ID`, so no epoch
/// is missed or counted twice; an error status (the job is gone) ends it.
async fn follow_events(client: &ClientArgs, http: &reqwest::Client, id: &str, spec: &JobSpec) -> anyhow::Result<()> {
    let mut bars = TrialBars::new(client.json, spec.epochs, &spec.objective);
    let mut last_id: Option<u64> = None;
    let mut reconnects = 0;
    loop {
        let mut request = http.get(format!("{}/v1/jobs/{id}/events", client.server));
        if let Some(last) = last_id {
            request = request.header("last-event-id", last.to_string());
        }
        let seen_before = last_id;
        match read_events(request, &mut last_id, &mut bars).await {
            Ok(true) => return Ok(()),
            Ok(false) => bars.note("the event stream ended before the job did; reconnecting"),
            Err(Dropped::Fatal(err)) => return Err(err),
            Err(Dropped::Connection(err)) => bars.note(&format!("the event stream dropped ({err:#}); resuming")),
        }
        reconnects = if last_id == seen_before { reconnects + 1 } else { 1 };
        if reconnects > MAX_RECONNECTS {
            bail!(
                "lost the event stream of job {id} {MAX_RECONNECTS} times in a row; `muon jobs show {id}` shows where it is"
            );
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(reconnects))).await;
    }
}

/// Why a read of the event stream stopped short.
enum Dropped {
    /// The server answered with an error, or an event this muon cannot
    /// read: retrying would not help.
    Fatal(anyhow::Error),
    /// The connection failed or broke: resume from the last event.
    Connection(anyhow::Error),
}

/// One connection's worth of events; `Ok(true)` once the job is over.
async fn read_events(
    request: reqwest::RequestBuilder,
    last_id: &mut Option<u64>,
    bars: &mut TrialBars,
) -> Result<bool, Dropped> {
    let mut response = request.send().await.map_err(|err| Dropped::Connection(err.into()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(Dropped::Fatal(anyhow::anyhow!("{}", super::failure_line(status, &body))));
    }
    let mut parser = SseParser::default();
    while let Some(chunk) = response.chunk().await.map_err(|err| Dropped::Connection(err.into()))? {
        for event in parser.push(&chunk) {
            let parsed: JobEvent = serde_json::from_str(&event.data)
                .with_context(|| format!("an event this muon does not know: {}", event.data))
                .map_err(Dropped::Fatal)?;
            if event.id.is_some() {
                *last_id = event.id;
            }
            if bars.show(&parsed) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One Server-Sent Event: its `id` and its `data` lines joined.
#[derive(Debug, PartialEq)]
struct SseEvent {
    id: Option<u64>,
    data: String,
}

/// Splits a Server-Sent Events body into events, whatever its chunking.
#[derive(Debug, Default)]
struct SseParser {
    pending: Vec<u8>,
    id: Option<u64>,
    data: Vec<String>,
}

impl SseParser {
    /// The events that `chunk` completes.
    fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(SseEvent { id: self.id.take(), data: self.data.join("\n") });
                }
                self.data.clear();
                self.id = None;
            } else if let Some(value) = field(line, "data") {
                self.data.push(value.to_owned());
            } else if let Some(value) = field(line, "id") {
                self.id = value.parse().ok();
            }
            // Comments (`:`), `event:` and `retry:` lines carry nothing muon sends.
        }
        events
    }
}

/// The value of `name: value` (one optional space after the colon, as SSE says).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.strip_prefix(name)?.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

/// A progress bar per trial, made when the trial's first event comes.
struct TrialBars {
    multi: MultiProgress,
    bars: BTreeMap<u32, ProgressBar>,
    epochs: u32,
    objective: String,
}

impl TrialBars {
    fn new(quiet: bool, epochs: u32, objective: &Objective) -> Self {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: BTreeMap::new(),
            epochs,
            objective: objective.metric.clone(),
        }
    }

    /// A line above the bars (none with `--json`).
    fn note(&self, line: &str) {
        // Printing fails only when stderr is gone; the bars would not show either.
        let _ = self.multi.println(line);
    }

    fn bar(&mut self, trial: u32) -> &ProgressBar {
        let (multi, epochs) = (&self.multi, self.epochs);
        self.bars.entry(trial).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(u64::from(epochs)));
            if let Ok(style) = ProgressStyle::with_template("trial {prefix:>3} {bar:30} {pos:>4}/{len} epochs  {msg}") {
                bar.set_style(style);
            }
            bar.set_prefix(trial.to_string());
            bar
        })
    }

    /// Draws `event`; true when it says the job is over.
    fn show(&mut self, event: &JobEvent) -> bool {
        match event {
            JobEvent::Epoch { trial, epoch, metrics } => {
                let mut message = metric_text("loss", metrics);
                if self.objective != "loss" {
                    message.push_str("  ");
                    message.push_str(&metric_text(&self.objective, metrics));
                }
                let bar = self.bar(*trial);
                bar.set_message(message);
                bar.set_position(u64::from(*epoch));
            }
            JobEvent::Trial { trial, state, error } => {
                let bar = self.bar(*trial).clone();
                let why = error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
                match state {
                    TrialState::Pending | TrialState::Running if error.is_some() => {
                        bar.set_message(format!("retrying{why}"))
                    }
                    TrialState::Pending | TrialState::Running => {}
                    TrialState::Succeeded => bar.finish(),
                    TrialState::Stopped => {
                        bar.abandon_with_message(format!("{}  stopped early", bar.message()));
                    }
                    TrialState::Failed | TrialState::Cancelled => {
                        bar.abandon_with_message(format!("{}{why}", state.as_str()));
                    }
                }
            }
            JobEvent::Job { state, .. } => {
                if state.is_final() {
                    for bar in self.bars.values().filter(|bar| !bar.is_finished()) {
                        bar.abandon();
                    }
                    return true;
                }
            }
        }
        false
    }
}

/// `name 0.1234`, or `name -` when the epoch did not report it.
fn metric_text(name: &str, metrics: &BTreeMap<String, f64>) -> String {
    format!("{name} {}", metrics.get(name).map_or_else(|| "-".to_owned(), |v| number(*v)))
}

/// A number short enough for a table: 6 significant digits at most.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e6).contains(&magnitude) {
        let text = format!("{value:.6}");
        let text = text.trim_end_matches('0');
        text.strip_suffix('.').unwrap_or(text).to_owned()
    } else {
        format!("{value:.3e}")
    }
}

/// `learning_rate=0.1 momentum=0.9`.
fn hyper_text(hyper: &BTreeMap<String, f64>) -> String {
    if hyper.is_empty() {
        return "-".to_owned();
    }
    hyper.iter().map(|(name, value)| format!("{name}={}", number(*value))).collect::<Vec<_>>().join(" ")
}

/// A row of the trials table, from a job or from its report.
struct TrialRow<'a> {
    trial: u32,
    state: TrialState,
    epochs: usize,
    hyper: &'a BTreeMap<String, f64>,
    objective: Option<f64>,
}

/// The trials, one a line, the best marked with `*`.
fn trials_table<'a>(rows: impl Iterator<Item = TrialRow<'a>>, objective: &Objective, best: Option<u32>) -> Vec<String> {
    let direction = match objective.mode {
        Mode::Min => "lower is better",
        Mode::Max => "higher is better",
    };
    let mut lines = vec![format!(
        "  {:>5}  {:<10} {:>6}  {:>12}  HYPER-PARAMETERS   ({} {direction})",
        "TRIAL",
        "STATE",
        "EPOCHS",
        objective.metric.to_uppercase(),
        objective.metric
    )];
    for row in rows {
        let mark = if best == Some(row.trial) { "*" } else { " " };
        lines.push(format!(
            "{mark} {:>5}  {:<10} {:>6}  {:>12}  {}",
            row.trial,
            row.state.as_str(),
            row.epochs,
            row.objective.map_or_else(|| "-".to_owned(), number),
            hyper_text(row.hyper),
        ));
    }
    lines
}

fn list_text(list: &JobList) -> String {
    let row = |id: &str, state: &str, function: &str, dataset: &str, created: &str| {
        format!("{id:<24} {state:<10} {function:<24} {dataset:<24} {created:>9}")
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
    let mut lines = vec![row("ID", "STATE", "FUNCTION", "DATASET", "CREATED")];
    for job in &list.jobs {
        let age = age_text(now_ms.saturating_sub(job.created_at_ms));
        lines.push(row(&job.id, job.state.as_str(), &job.function, &job.dataset, &age));
    }
    lines.join("\n")
}

/// `12s ago`, `4m ago`, `2h ago`, `3d ago`.
fn age_text(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    let (count, unit) = match seconds {
        0..60 => (seconds, "s"),
        60..3600 => (seconds / 60, "m"),
        3600..86_400 => (seconds / 3600, "h"),
        _ => (seconds / 86_400, "d"),
    };
    format!("{count}{unit} ago")
}

fn job_text(job: &Job) -> String {
    let spec = &job.spec;
    let mut lines = vec![format!(
        "job {} {}: {} version {} on {} version {}, {} epochs",
        job.id,
        job.state.as_str(),
        spec.function,
        job.function_version,
        spec.dataset,
        job.dataset_version,
        spec.epochs
    )];
    if let Some(error) = &job.error {
        lines.push(format!("error: {error}"));
    }
    let rows = job.trials.iter().map(|t| TrialRow {
        trial: t.trial,
        state: t.state,
        epochs: t.epoch as usize,
        hyper: &t.hyper,
        objective: t.metrics.get(&spec.objective.metric).copied(),
    });
    lines.extend(trials_table(rows, &spec.objective, job.best_trial));
    for trial in job.trials.iter().filter(|t| t.error.is_some()) {
        let attempts = trial.attempt;
        lines.push(format!(
            "trial {} (attempt {attempts}): {}",
            trial.trial,
            trial.error.as_deref().unwrap_or_default()
        ));
    }
    lines.join("\n")
}

/// The report for people: the trials table, the best trial, the test figures.
fn report_text(report: &JobReport) -> String {
    let mut lines = vec![format!("job {} {}", report.id, report.state.as_str())];
    let rows = report.trials.iter().map(|t| TrialRow {
        trial: t.trial,
        state: t.state,
        epochs: t.curves.values().map(Vec::len).max().unwrap_or(0),
        hyper: &t.hyper,
        objective: t.curves.get(&report.objective.metric).and_then(|curve| curve.last()).copied(),
    });
    lines.extend(trials_table(rows, &report.objective, report.best_trial));
    if let (Some(best), Some(hyper)) = (report.best_trial, &report.best_hyper) {
        lines.push(format!("best trial: {best} ({})", hyper_text(hyper)));
    }
    if let Some(test) = &report.test {
        let metrics: Vec<String> = test.metrics.keys().map(|name| metric_text(name, &test.metrics)).collect();
        lines.push(format!("test ({} rows): {}", test.rows, metrics.join(", ")));
        if let Some(confusion) = &test.confusion {
            lines.push("confusion (rows: true class, columns: predicted):".to_owned());
            for row in confusion {
                let mut line = String::from(" ");
                for count in row {
                    let _ = write!(line, " {count:>5}");
                }
                lines.push(line);
            }
        }
    }
    if let Some(exported) = &report.exported {
        lines.push(format!("exported: model {} version {}", exported.model, exported.version));
    }
    lines.push(format!(
        "time: {:.2} s wall, {:.2} s guest CPU, {:.2} s wasi-nn ({:.2} s on GPU); cost {} micros",
        report.wall_time_s, report.cpu_time_s, report.nn_cpu_time_s, report.nn_gpu_time_s, report.cost_micros
    ));
    lines.join("\n")
}

fn logs_text(logs: &JobLogs) -> String {
    let mut lines = Vec::new();
    for trial in &logs.trials {
        for (stream, text) in [("stdout", &trial.stdout), ("stderr", &trial.stderr)] {
            if !text.is_empty() {
                lines.push(format!("--- trial {} {stream}", trial.trial));
                lines.push(text.trim_end().to_owned());
            }
        }
    }
    if lines.is_empty() {
        lines.push("no output".to_owned());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_whatever_the_chunks() {
        let body = b"id: 1\ndata: {\"a\":1}\n\n: a comment\nid: 2\r\ndata: x\r\ndata: y\r\n\r\ndata: no id\n\n";
        let whole = SseParser::default().push(body);
        let mut parser = SseParser::default();
        let bytewise: Vec<SseEvent> = body.iter().flat_map(|b| parser.push(&[*b])).collect();
        let expected = vec![
            SseEvent { id: Some(1), data: "{\"a\":1}".to_owned() },
            SseEvent { id: Some(2), data: "x\ny".to_owned() },
            SseEvent { id: None, data: "no id".to_owned() },
        ];
        assert_eq!(whole, expected);
        assert_eq!(bytewise, expected);
        assert!(SseParser::default().push(b"id: 3\ndata: cut").is_empty(), "an event ends with a blank line");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.0000125), "1.250e-5");
        assert_eq!(number(-2.71234567), "-2.712346");
    }

    #[test]
    fn ages_are_in_one_unit() {
        assert_eq!(age_text(59_999), "59s ago");
        assert_eq!(age_text(61_000), "1m ago");
        assert_eq!(age_text(7_300_000), "2h ago");
        assert_eq!(age_text(-5), "0s ago");
    }
}
