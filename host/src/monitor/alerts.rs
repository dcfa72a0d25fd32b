//! Alerts: fired and resolved once across nodes (the database keeps one
//! firing alert per set of labels), each transition appended to the audit
//! log and published to this node's subscribers (the sink deliverer).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::api::{Alert, AlertLabels, AlertState};
use crate::db::{AlertRow, Db, NewAudit};

/// Transitions kept for a subscriber that falls behind.
const TRANSITION_BUFFER: usize = 1024;
/// How often `muon_alerts_firing` is read again from the database when this
/// node changed nothing (another node may have).
const GAUGE_REFRESH: Duration = Duration::from_secs(10);

/// What a detector saw, to fire an alert with.
#[derive(Debug, Clone)]
pub struct Firing {
    /// What it is about.
    pub labels: AlertLabels,
    /// The value seen.
    pub value: f64,
    /// The baseline it was compared with.
    pub baseline: f64,
    /// One line a person can act on.
    pub summary: String,
}

/// Fires, resolves and lists alerts.
pub struct Alerts {
    db: Db,
    transitions: broadcast::Sender<Alert>,
    /// This node fired or resolved an alert since the gauge was last refreshed.
    changed: AtomicBool,
    /// When the gauge was last refreshed.
    refreshed: Mutex<Option<Instant>>,
}

impl Alerts {
    /// Alerts kept in `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            transitions: broadcast::channel(TRANSITION_BUFFER).0,
            changed: AtomicBool::new(false),
            refreshed: Mutex::new(None),
        }
    }

    /// Every alert this node fires or resolves from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.transitions.subscribe()
    }

    /// Fires an alert unless one with the same labels is firing (on any
    /// node); returns it when this call fired it.
    pub async fn fire(&self, firing: Firing) -> anyhow::Result<Option<Alert>> {
        let now_ms = crate::clock::now_ms();
        let row = AlertRow {
            id: crate::names::random_id("alert")?,
            tenant: firing.labels.tenant.clone(),
            fingerprint: fingerprint(&firing.labels),
            state: AlertState::Firing.as_str().to_owned(),
            starts_at_ms: now_ms,
            ends_at_ms: None,
            labels: serde_json::to_string(&firing.labels)?,
            value: firing.value,
            baseline: firing.baseline,
            summary: firing.summary,
        };
        if !self.db.fire_alert(&row).await? {
            return Ok(None);
        }
        let alert = alert_of(&row)?;
        tracing::warn!(alert = %alert.id, tenant = %alert.labels.tenant, summary = %alert.summary, "alert firing");
        self.publish("alert_firing", &alert).await;
        Ok(Some(alert))
    }

    /// Resolves the firing alert with these labels, if there is one; returns
    /// it when this call resolved it.
    pub async fn resolve(&self, labels: &AlertLabels) -> anyhow::Result<Option<Alert>> {
        let Some(row) = self.db.resolve_alert(&fingerprint(labels), crate::clock::now_ms()).await? else {
            return Ok(None);
        };
        let alert = alert_of(&row)?;
        tracing::info!(alert = %alert.id, tenant = %alert.labels.tenant, summary = %alert.summary, "alert resolved");
        self.publish("alert_resolved", &alert).await;
        Ok(Some(alert))
    }

    /// A tenant's alerts, newest first.
    pub async fn list(&self, tenant: &str, state: Option<AlertState>, limit: u32) -> anyhow::Result<Vec<Alert>> {
        let rows = self.db.alerts(tenant, state.map(AlertState::as_str), i64::from(limit.clamp(1, 1000))).await?;
        rows.iter().map(alert_of).collect()
    }

    /// Every firing alert, of every tenant.
    pub async fn firing(&self) -> anyhow::Result<Vec<Alert>> {
        self.db.firing_alerts().await?.iter().map(alert_of).collect()
    }

    /// Sets `muon_alerts_firing` from the firing alerts of every node: at once
    /// after this node changed one, else every [`GAUGE_REFRESH`] (a cheap
    /// query then). Called at every monitor tick.
    pub async fn refresh_metrics(&self) {
        let due = {
            let refreshed = self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            refreshed.is_none_or(|at| at.elapsed() >= GAUGE_REFRESH)
        };
        if !(self.changed.swap(false, Ordering::AcqRel) || due) {
            return;
        }
        match self.firing().await {
            Ok(firing) => {
                crate::telemetry::set_alerts_firing(firing_counts(&firing));
                *self.refreshed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
            }
            Err(err) => {
                self.changed.store(true, Ordering::Release);
                tracing::warn!(error = format!("{err:#}"), "cannot read the firing alerts for /metrics");
            }
        }
    }

    async fn publish(&self, kind: &str, alert: &Alert) {
        crate::telemetry::count_alert_transition(&alert.labels.detector, alert.state.as_str());
        self.changed.store(true, Ordering::Release);
        let subject = alert
            .labels
            .function
            .as_deref()
            .or(alert.labels.model.as_deref())
            .unwrap_or(alert.labels.detector.as_str())
            .to_owned();
        self.db
            .audit_or_log(NewAudit {
                tenant: &alert.labels.tenant,
                kind,
                subject: &subject,
                message: &alert.summary,
                detail: serde_json::json!({ "alert": alert.id, "labels": alert.labels, "value": alert.value,
                    "baseline": alert.baseline }),
            })
            .await;
        // Nobody subscribed is fine: no sink deliverer runs, say, in a test.
        drop(self.transitions.send(alert.clone()));
    }
}

/// Firing alerts counted by `(tenant, detector)`.
fn firing_counts(firing: &[Alert]) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for alert in firing.iter().filter(|a| a.state == AlertState::Firing) {
        *counts.entry((alert.labels.tenant.clone(), alert.labels.detector.clone())).or_default() += 1;
    }
    counts
}

/// The labels as one text, the same on every node.
fn fingerprint(labels: &AlertLabels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| format!("{labels:?}"))
}

fn alert_of(row: &AlertRow) -> anyhow::Result<Alert> {
    Ok(Alert {
        id: row.id.clone(),
        state: if row.state == "resolved" { AlertState::Resolved } else { AlertState::Firing },
        starts_at_ms: row.starts_at_ms,
        ends_at_ms: row.ends_at_ms,
        labels: serde_json::from_str(&row.labels)?,
        value: row.value,
        baseline: row.baseline,
        summary: row.summary.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AlertLabels;

    fn alert(tenant: &str, detector: &str, state: AlertState) -> Alert {
        Alert {
            id: String::new(),
            state,
            starts_at_ms: 0,
            ends_at_ms: None,
            labels: AlertLabels {
                tenant: tenant.to_owned(),
                detector: detector.to_owned(),
                function: None,
                version: None,
                model: None,
                feature: None,
            },
            value: 0.0,
            baseline: 0.0,
            summary: String::new(),
        }
    }

    #[test]
    fn firing_alerts_are_counted_by_tenant_and_detector() {
        let alerts = [
            alert("a", "error_rate", AlertState::Firing),
            alert("a", "error_rate", AlertState::Firing),
            alert("b", "drift", AlertState::Firing),
            alert("b", "drift", AlertState::Resolved),
        ];
        let counts = firing_counts(&alerts);
        let key = |t: &str, d: &str| (t.to_owned(), d.to_owned());
        assert_eq!(counts, BTreeMap::from([(key("a", "error_rate"), 2), (key("b", "drift"), 1)]));
    }
}
