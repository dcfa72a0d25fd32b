//! Operations: live statistics (`GET /v1/functions/{name}/stats`,
//! `GET /v1/models/{name}/stats`), alerts (`GET /v1/alerts`), alert sinks
//! (`/v1/alerts/sinks/{name}`), the audit log (`GET /v1/events`) and the
//! thresholds of the anomaly detectors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Whether an alert is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds.
    Firing,
    /// It held, and no longer does.
    Resolved,
}

impl AlertState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// What an alert is about: the labels a sink groups and routes by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct AlertLabels {
    /// The tenant that owns what the alert is about.
    pub tenant: String,
    /// The detector that raised it: `error_rate`, `latency_p99`, `rate_drop`,
    /// `rate_spike`, `model_compute`, `drift`, `canary`, `model_unloadable`.
    pub detector: String,
    /// The function, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The function's version, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The model, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The input feature, for `drift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

/// An alert: a condition a detector saw hold for long enough to tell someone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Its id.
    pub id: String,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// When it started firing, in Unix milliseconds.
    pub starts_at_ms: i64,
    /// When it was resolved, in Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at_ms: Option<i64>,
    /// What it is about.
    pub labels: AlertLabels,
    /// The value the detector saw (its unit is in the summary).
    pub value: f64,
    /// The baseline the value was compared with.
    pub baseline: f64,
    /// One line a person can act on.
    pub summary: String,
}

/// `GET /v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<Alert>,
}

/// The query of `GET /v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only alerts in this state [default: both].
    #[serde(default)]
    pub state: Option<AlertState>,
    /// At most this many [default: 100, at most 1000].
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Its position in the log: increasing, the cursor of `after`.
    pub id: i64,
    /// When it happened, in Unix milliseconds.
    pub at_ms: i64,
    /// `deploy`, `rollback`, `promotion`, `canary`, `alert_firing`,
    /// `alert_resolved`, `model_load`, `model_reload`, `job_state`...
    pub kind: String,
    /// What it is about: a function, a model or a job.
    pub subject: String,
    /// One line for a person.
    pub message: String,
    /// The details, by kind.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// `GET /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventList {
    /// Oldest first.
    pub events: Vec<AuditEvent>,
    /// Pass this as `after` for the next page (or to wait for newer events).
    pub next_after: i64,
}

/// The query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events after this id [default: from the start].
    #[serde(default)]
    pub after: Option<i64>,
    /// At most this many [default: 100, at most 1000].
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only events of this kind.
    #[serde(default)]
    pub kind: Option<String>,
}

/// `PUT /v1/alerts/sinks/{name}`: where a tenant's alerts are posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkRequest {
    /// An `http` or `https` URL that takes Alertmanager's webhook payload (version 4).
    pub url: String,
    /// The key of the HMAC-SHA256 signature of each body, sent in
    /// `X-Muon-Signature: sha256=<hex>`.
    pub secret: String,
}

/// A registered sink, as listed (the secret is never shown again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Sink {
    /// Its name.
    pub name: String,
    /// Where alerts go.
    pub url: String,
    /// When it was registered, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The last delivery's outcome: `ok`, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<String>,
}

/// `GET /v1/alerts/sinks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SinkList {
    /// By name.
    pub sinks: Vec<Sink>,
}

/// The query of the stats routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// How far back: `30s`, `15m`, `2h`, `1d` [default: `15m`, at most `24h`].
    #[serde(default)]
    pub window: Option<String>,
}

/// Latency (or compute time) percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// One 10-second window of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowPoint {
    /// Its start, in Unix milliseconds.
    pub start_ms: i64,
    /// Calls in it.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Its latency percentiles, in milliseconds.
    pub latency_ms: Percentiles,
}

/// Statistics of one function version (or one model version) over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SeriesStats {
    /// The version.
    pub version: i64,
    /// Calls (or computes).
    pub requests: u64,
    /// Calls per second over the window.
    pub rate_per_s: f64,
    /// Calls by outcome: `ok` or the error code.
    pub outcomes: BTreeMap<String, u64>,
    /// Latency percentiles (for a model, compute time), in milliseconds.
    pub latency_ms: Percentiles,
    /// Guest CPU time, in milliseconds.
    pub cpu_ms: f64,
    /// wasi-nn compute time by device (`cpu`, `gpu`), in milliseconds.
    pub compute_ms: BTreeMap<String, f64>,
    /// What the calls cost, in micro-units of the plan's currency.
    pub cost_micros: i64,
    /// The 10-second windows that had calls, oldest first.
    pub windows: Vec<WindowPoint>,
}

/// `GET /v1/functions/{name}/stats` and `GET /v1/models/{name}/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    /// The function or model.
    pub name: String,
    /// The window asked for, in seconds.
    pub window_s: u64,
    /// The window's start and end, in Unix milliseconds.
    pub from_ms: i64,
    /// The window's end.
    pub to_ms: i64,
    /// Statistics start when this node started: before this time the
    /// windows are empty, not zero.
    pub covered_from_ms: i64,
    /// Each version that had calls in the window, newest first.
    pub versions: Vec<SeriesStats>,
}

/// Thresholds of the anomaly detectors. Every field is optional in a
/// `PUT`: an unset one takes the tenant's value, then the host default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Calls a 10-second window needs before a detector judges it [default: 20].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Windows in a row a condition must hold before it fires, like
    /// Prometheus' `for` [default: 3].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_windows: Option<u32>,
    /// An error rate this far (absolute) above the baseline's fires [default: 0.1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_increase: Option<f64>,
    /// A p99 latency this many times the baseline's fires [default: 2.0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ratio: Option<f64>,
    /// A request rate this many times the baseline's fires `rate_spike` [default: 10.0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_spike_ratio: Option<f64>,
    /// Whether a rate falling to zero from a steady baseline fires `rate_drop` [default: true].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_drop: Option<bool>,
    /// A drift alert fires when a feature's running mean is this many of
    /// the training standard deviations away [default: 3.0].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_sigmas: Option<f64>,
}

/// `GET`/`PUT /v1/monitor/thresholds` and `/v1/functions/{name}/thresholds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThresholdSettings {
    /// What was set at this level.
    pub set: Thresholds,
    /// What applies: this level over the tenant's over the host defaults.
    pub effective: Thresholds,
}
