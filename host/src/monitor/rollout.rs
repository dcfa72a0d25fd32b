//! Judging guarded rollouts: the candidate against the stable version.
//!
//! A canary is compared with the stable version over the same span (both
//! take calls at once); a watched deploy with the stable version's last ten
//! minutes before the deploy. Two one-sided tests, each needing
//! `min_sample` calls on both sides, so that one bad call proves nothing:
//! - **errors:** a two-proportion z-test of the candidate's share of failed
//!   calls (the function's faults, not the callers') against the stable
//!   one's, significant at z > 3.09 (p < 0.001) and larger by at least the
//!   `error_rate_increase` threshold;
//! - **latency:** the share of the candidate's calls slower than the
//!   stable version's p99, which is 1% if nothing changed, tested with a
//!   binomial z-test at the same level, and the candidate's p99 at least
//!   `latency_ratio` times the stable one's and `LATENCY_FLOOR_MS` more.
//!
//! A regression rolls back at once; a rollout that reaches its end without
//! one is promoted.

use std::sync::Arc;

use crate::api::{AlertLabels, ErrorCode};
use crate::db::NewAudit;
use crate::registry::{Decision, Rollout};
use crate::stats::{SeriesKey, SeriesKind, Window};

use super::{Firing, Limits, Monitor};

/// One-sided z for p < 0.001.
const Z_CRITICAL: f64 = 3.09;
/// A latency regression must add at least this much to the p99, in
/// milliseconds: below it, a busy machine's jitter would roll back fast
/// functions whose p99 is a millisecond or two.
pub(super) const LATENCY_FLOOR_MS: f64 = 5.0;
/// How far back a watched deploy's baseline reaches.
const WATCH_BASELINE_MS: i64 = 10 * 60 * 1000;

/// What the tests found.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Regression {
    /// `error_rate` or `latency_p99`.
    pub detector: &'static str,
    /// The candidate's value.
    pub value: f64,
    /// The stable version's.
    pub baseline: f64,
    /// What a person reads.
    pub summary: String,
}

/// Failed calls that are the function's fault.
pub(super) fn function_faults(window: &Window) -> u64 {
    window.errors.iter().filter(|(code, _)| is_function_fault(**code)).map(|(_, n)| n).sum()
}

/// Whether a call that ended with `code` failed because of the function
/// rather than its caller or a quota.
pub(super) fn is_function_fault(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Trap
            | ErrorCode::Timeout
            | ErrorCode::MemoryLimit
            | ErrorCode::InvalidResponse
            | ErrorCode::ResponseTooLarge
            | ErrorCode::Internal
    )
}

/// Compares `candidate` with `stable`; `None` when there is no regression
/// or not yet enough calls to tell.
pub(super) fn judge(candidate: &Window, stable: &Window, limits: &Limits, min_sample: u64) -> Option<Regression> {
    if candidate.requests < min_sample || stable.requests < min_sample {
        return None;
    }
    let (n1, n2) = (candidate.requests as f64, stable.requests as f64);
    let (p1, p2) = (function_faults(candidate) as f64 / n1, function_faults(stable) as f64 / n2);
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if p1 - p2 >= limits.error_rate_increase && (spread == 0.0 || (p1 - p2) / spread > Z_CRITICAL) {
        return Some(Regression {
            detector: "error_rate",
            value: p1,
            baseline: p2,
            summary: format!(
                "{:.1}% of its calls failed against {:.1}% for the stable version ({} calls against {})",
                p1 * 100.0,
                p2 * 100.0,
                candidate.requests,
                stable.requests
            ),
        });
    }
    let (p99, stable_p99) = (candidate.quantile_ms(0.99), stable.quantile_ms(0.99));
    let slower = candidate.share_slower_than(stable_p99);
    let z = (slower - 0.01) / (0.01 * 0.99 / n1).sqrt();
    if z > Z_CRITICAL && p99 >= stable_p99 * limits.latency_ratio && p99 - stable_p99 >= LATENCY_FLOOR_MS {
        return Some(Regression {
            detector: "latency_p99",
            value: p99,
            baseline: stable_p99,
            summary: format!(
                "p99 latency {p99:.1} ms against {stable_p99:.1} ms for the stable version; {:.0}% of its calls \
                 were slower than the stable p99",
                slower * 100.0
            ),
        });
    }
    None
}

impl Monitor {
    /// Judges every rollout in progress: rolls back a regressed candidate,
    /// promotes one whose time is up.
    pub(super) async fn judge_rollouts(&self, now_ms: i64) {
        for rollout in self.registry.rollouts() {
            if let Err(err) = self.judge_rollout(&rollout, now_ms).await {
                tracing::warn!(
                    function = %rollout.row.name,
                    tenant = %rollout.row.tenant,
                    error = format!("{err:#}"),
                    "cannot judge the rollout"
                );
            }
        }
    }

    async fn judge_rollout(&self, rollout: &Arc<Rollout>, now_ms: i64) -> anyhow::Result<()> {
        let row = &rollout.row;
        let series = |version: i64| {
            self.stats.series(SeriesKey {
                kind: SeriesKind::Function,
                tenant: Arc::from(row.tenant.as_str()),
                name: Arc::from(row.name.as_str()),
                version,
            })
        };
        let window_ms = self.stats.window_ms();
        let from_ms = row.started_at_ms - row.started_at_ms.rem_euclid(window_ms);
        let candidate = series(row.candidate_version).merged(from_ms, i64::MAX);
        let stable = if rollout.is_watch() {
            series(row.stable_version).merged(row.started_at_ms - WATCH_BASELINE_MS, row.started_at_ms)
        } else {
            series(row.stable_version).merged(from_ms, i64::MAX)
        };
        let limits = self.thresholds.effective(&row.tenant, &row.name);
        if let Some(regression) = judge(&candidate, &stable, &limits, self.settings.min_sample) {
            return self.roll_back(rollout, regression).await;
        }
        if now_ms >= row.until_ms {
            let promoted =
                self.registry.end_rollout(&row.tenant, &row.name, row.candidate_version, Decision::Promote).await?;
            if promoted.is_some() {
                let message = format!(
                    "version {} promoted after {} s without a regression ({} calls)",
                    row.candidate_version,
                    (row.until_ms - row.started_at_ms) / 1000,
                    candidate.requests
                );
                let detail = serde_json::json!({ "version": row.candidate_version, "calls": candidate.requests });
                self.audit(&row.tenant, "promotion", &row.name, &message, detail).await;
            }
        }
        Ok(())
    }

    async fn roll_back(&self, rollout: &Rollout, regression: Regression) -> anyhow::Result<()> {
        let row = &rollout.row;
        let ended =
            self.registry.end_rollout(&row.tenant, &row.name, row.candidate_version, Decision::RollBack).await?;
        if ended.is_none() {
            return Ok(());
        }
        let summary = format!(
            "{} version {} rolled back to version {}: {}",
            row.name, row.candidate_version, row.stable_version, regression.summary
        );
        let detail = serde_json::json!({ "from": row.candidate_version, "to": row.stable_version, "automatic": true,
            "detector": regression.detector, "value": regression.value, "baseline": regression.baseline });
        self.audit(&row.tenant, "rollback", &row.name, &summary, detail).await;
        let labels = AlertLabels {
            tenant: row.tenant.clone(),
            detector: format!("rollout_{}", regression.detector),
            function: Some(row.name.clone()),
            version: Some(row.candidate_version),
            ..AlertLabels::default()
        };
        self.alerts
            .fire(Firing { labels: labels.clone(), value: regression.value, baseline: regression.baseline, summary })
            .await?;
        // The stable version is serving again: the alert resolves once it
        // has been for two windows.
        self.resolve_later(labels, crate::clock::now_ms() + 2 * self.stats.window_ms());
        Ok(())
    }

    /// Appends to the audit log.
    pub(super) async fn audit(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        message: &str,
        detail: serde_json::Value,
    ) {
        self.db.audit_or_log(NewAudit { tenant, kind, subject, message, detail }).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Sample, StatsSettings, StatsStore};

    fn window(calls: u64, failed_every: u64, latency_ms: u64) -> Window {
        let store = StatsStore::new(StatsSettings::default());
        let series = store.series(SeriesKey {
            kind: SeriesKind::Function,
            tenant: Arc::from("t"),
            name: Arc::from("f"),
            version: 1,
        });
        for call in 0..calls {
            let error = (failed_every > 0 && call % failed_every == 0).then_some(ErrorCode::Trap);
            // Latencies spread over 1x..2x, as real ones are.
            let latency = Duration::from_micros(latency_ms * 1000 + (call % 100) * latency_ms * 10);
            series.record_at(1000, &Sample { error, latency, ..Sample::default() });
        }
        series.merged(0, i64::MAX)
    }

    #[test]
    fn a_version_failing_a_third_of_its_calls_regresses() {
        let found = judge(&window(60, 3, 1), &window(540, 0, 1), &Limits::default(), 50);
        assert_eq!(found.map(|r| r.detector), Some("error_rate"));
    }

    #[test]
    fn too_few_calls_prove_nothing() {
        assert_eq!(judge(&window(20, 2, 1), &window(540, 0, 1), &Limits::default(), 50), None);
    }

    #[test]
    fn a_steady_trickle_of_failures_is_no_regression() {
        // 2% against 1%: significant with enough calls, but under the 10-point threshold.
        assert_eq!(judge(&window(5000, 50, 1), &window(5000, 100, 1), &Limits::default(), 50), None);
    }

    #[test]
    fn a_version_50_ms_slower_regresses_on_latency() {
        let found = judge(&window(60, 0, 51), &window(540, 0, 1), &Limits::default(), 50);
        assert_eq!(found.map(|r| r.detector), Some("latency_p99"));
        assert_eq!(judge(&window(60, 0, 1), &window(540, 0, 1), &Limits::default(), 50), None);
    }
}
