//! A job's report: per-trial curves from its epoch events, the best
//! trial, its test figures and export, what the job used and cost; and the
//! curves drawn as SVG.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::api::jobs::{JobEvent, JobReport, JobState, TrialReport};

use super::finish::JobResult;
use super::{JobError, Jobs};

/// Events read per query while building a report.
const PAGE: i64 = 10_000;

impl Jobs {
    /// The report of job `id` of `tenant`, so far or final.
    pub async fn report(&self, tenant: &str, id: &str) -> Result<JobReport, JobError> {
        let job = self.get(tenant, id).await?;
        let rows = self.deps.db.trials(id).await?;
        let mut curves: BTreeMap<u32, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
        let mut after = 0;
        loop {
            let events = self.deps.db.job_events(id, after, PAGE).await?;
            let Some(last) = events.last() else { break };
            after = last.seq;
            for event in &events {
                if let Ok(JobEvent::Epoch { trial, metrics, .. }) = serde_json::from_str(&event.data) {
                    let trial = curves.entry(trial).or_default();
                    for (name, value) in metrics {
                        trial.entry(name).or_default().push(value);
                    }
                }
            }
        }
        let result: JobResult = match self.deps.db.job_by_id(id).await?.and_then(|row| row.result) {
            Some(json) => serde_json::from_str(&json).map_err(anyhow::Error::from)?,
            None => JobResult::default(),
        };
        let best_trial = result.best_trial.or(job.best_trial);
        let sum = |f: fn(&crate::db::TrialUsage) -> i64| rows.iter().map(|t| f(&t.usage)).sum::<i64>();
        let seconds = |us: i64| us as f64 / 1e6;
        let end = job.finished_at_ms.unwrap_or_else(crate::clock::now_ms);
        Ok(JobReport {
            id: job.id,
            state: job.state,
            objective: job.spec.objective.clone(),
            best_hyper: best_trial.and_then(|b| job.trials.iter().find(|t| t.trial == b)).map(|t| t.hyper.clone()),
            trials: job
                .trials
                .into_iter()
                .map(|t| TrialReport {
                    curves: curves.remove(&t.trial).unwrap_or_default(),
                    trial: t.trial,
                    hyper: t.hyper,
                    state: t.state,
                })
                .collect(),
            best_trial,
            test: result.test,
            exported: result.exported,
            wall_time_s: job.started_at_ms.map_or(0.0, |start| (end - start).max(0) as f64 / 1e3),
            cpu_time_s: seconds(sum(|u| u.cpu_us)),
            nn_cpu_time_s: seconds(sum(|u| u.nn_cpu_us)),
            nn_gpu_time_s: seconds(sum(|u| u.nn_gpu_us)),
            cost_micros: sum(|u| u.cost_micros),
        })
    }
}

/// The report's curves as an SVG picture: the training loss of every trial
/// on the left, the objective on the right, the best trial drawn thicker.
pub fn svg(report: &JobReport) -> Result<String, JobError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1100, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let title = match report.state {
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::TimedOut => {
                format!("job {} ({})", report.id, report.state.as_str())
            }
            JobState::Queued | JobState::Running => format!("job {} ({}, so far)", report.id, report.state.as_str()),
        };
        let root = root.titled(&title, ("sans-serif", 18)).map_err(draw_error)?;
        let (left, right) = root.split_horizontally(550);
        panel(&left, report, "loss")?;
        panel(&right, report, &report.objective.metric)?;
        root.present().map_err(draw_error)?;
    }
    Ok(out)
}

/// One metric's curves, one line per trial.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &JobReport,
    metric: &str,
) -> Result<(), JobError> {
    let series: Vec<(u32, &Vec<f64>)> =
        report.trials.iter().filter_map(|t| t.curves.get(metric).map(|c| (t.trial, c))).collect();
    let epochs = series.iter().map(|(_, c)| c.len()).max().unwrap_or(0).max(1);
    let values = series.iter().flat_map(|(_, c)| c.iter().copied()).filter(|v| v.is_finite());
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if low.is_finite() { (low, if high > low { high } else { low + 1.0 }) } else { (0.0, 1.0) };
    let margin = (high - low) * 0.05;
    let mut chart = ChartBuilder::on(area)
        .caption(metric, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..epochs as f64, (low - margin)..(high + margin))
        .map_err(draw_error)?;
    chart.configure_mesh().x_desc("epoch").y_desc(metric).draw().map_err(draw_error)?;
    for (index, (trial, curve)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let width = if report.best_trial == Some(*trial) { 3 } else { 1 };
        let points = curve.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(e, v)| ((e + 1) as f64, *v));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))
            .map_err(draw_error)?
            .label(format!("trial {trial}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    if !series.is_empty() && series.len() <= 12 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
    }
    Ok(())
}

fn draw_error<E: std::error::Error + Send + Sync>(err: DrawingAreaErrorKind<E>) -> JobError {
    JobError::Internal(anyhow::anyhow!("cannot draw the report: {err}"))
}
