//! Alert sinks: every alert this node fires or resolves is POSTed to each
//! sink of the alert's tenant as Alertmanager's webhook payload (version 4),
//! so a sink can be an Alertmanager or any webhook consumer. The body is
//! signed with HMAC-SHA256 under the sink's secret (`X-Muon-Signature:
//! sha256=<hex>`).
//!
//! Each sink has its own lane: a bounded queue (the oldest delivery is
//! dropped, and counted, when it is full) drained by one task, so a sink
//! gets its alerts in order and a dead sink delays nobody else's. A delivery
//! is retried with exponential backoff; each attempt has a timeout and
//! obeys the outbound policy of guests' requests (`engine::post`): no
//! private, loopback or link-local address unless the operator allows them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::api::{Alert, AlertLabels, AlertState};
use crate::db::{Db, SinkRow};
use crate::engine::PostError;

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: &str = "x-muon-signature";

/// The Prometheus counter of deliveries, by `outcome`.
const DELIVERIES_METRIC: &str = "muon_alert_deliveries_total";

/// The Prometheus counter of deliveries dropped from full queues.
const DROPPED_METRIC: &str = "muon_alert_deliveries_dropped_total";

/// The longest sink URL accepted.
const MAX_URL_LEN: usize = 2048;

/// How deliveries to sinks go.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Whether sinks may be private, loopback or link-local addresses.
    pub allow_private: bool,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles after each.
    pub first_backoff: Duration,
    /// The limit on one attempt: lookup, connection and answer.
    pub attempt_timeout: Duration,
    /// Deliveries a sink's queue holds before the oldest is dropped.
    pub queue: usize,
}

impl Default for SinkSettings {
    /// Five attempts 0.5, 1, 2 and 4 s apart, 10 s each: a sink that is
    /// down for a minute loses the alert, one that restarts does not.
    fn default() -> Self {
        Self {
            allow_private: false,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(10),
            queue: 256,
        }
    }
}

/// A sink URL that cannot be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Not an `http` or `https` URL with a host.
    #[error("invalid sink URL `{0}`: give an http or https URL with a host, such as https://alerts.example.com/hook")]
    InvalidUrl(String),
    /// An address the outbound policy refuses.
    #[error(
        "sink URL `{0}` is a private, loopback or link-local address; the operator has not allowed those \
         (`allow_private_sinks`)"
    )]
    PrivateAddress(String),
    /// The secret is empty.
    #[error("a sink needs a non-empty secret: the key of the body's HMAC-SHA256 signature")]
    EmptySecret,
}

/// Checks a sink URL as registered: `http` or `https`, a host, no user
/// information (it would be sent to whoever the host is), and, when the
/// host is an IP address, one the policy allows. A name is checked at each
/// delivery, against every address it resolves to then.
pub fn check_url(url: &str, allow_private: bool) -> Result<http::Uri, SinkError> {
    let invalid = || SinkError::InvalidUrl(url.to_owned());
    if url.len() > MAX_URL_LEN {
        return Err(invalid());
    }
    let uri: http::Uri = url.parse().map_err(|_| invalid())?;
    let authority = uri.authority().ok_or_else(invalid)?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || authority.as_str().contains('@') {
        return Err(invalid());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid());
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>()
        && !allow_private
        && crate::engine::is_internal_address(ip)
    {
        return Err(SinkError::PrivateAddress(url.to_owned()));
    }
    Ok(uri)
}

/// One POST to one sink, with what to record its outcome under.
#[derive(Debug, Clone)]
struct Delivery {
    tenant: String,
    sink: String,
    url: String,
    secret: String,
    body: Bytes,
}

impl Delivery {
    fn lane(&self) -> String {
        lane_key(&self.tenant, &self.sink)
    }
}

fn lane_key(tenant: &str, sink: &str) -> String {
    format!("{tenant}/{sink}")
}

/// Why an attempt failed, and whether another could succeed.
struct Failure {
    reason: String,
    retry: bool,
}

/// Posts alerts to the sinks of their tenants.
pub struct Sinks {
    db: Db,
    settings: SinkSettings,
    /// Each sink's queue, by `tenant/name`; an entry exists while a task drains it.
    lanes: Mutex<HashMap<String, VecDeque<Delivery>>>,
    /// Sinks (`tenant/name`) whose last delivery from this node failed.
    failing: Mutex<BTreeSet<String>>,
    dropped: AtomicU64,
}

impl Sinks {
    /// Sinks registered in `db`.
    pub fn new(db: Db, settings: SinkSettings) -> Self {
        Self {
            db,
            settings,
            lanes: Mutex::new(HashMap::new()),
            failing: Mutex::new(BTreeSet::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Their settings.
    pub fn settings(&self) -> &SinkSettings {
        &self.settings
    }

    /// Posts each transition of `transitions` to the sinks of its tenant,
    /// until the sender is gone. `external_url` is where this muon answers,
    /// for the payloads' links.
    pub async fn run(self: Arc<Self>, mut transitions: broadcast::Receiver<Alert>, external_url: String) {
        metrics::describe_counter!(DELIVERIES_METRIC, "Alert webhook deliveries, by outcome (ok, failed)");
        metrics::describe_counter!(DROPPED_METRIC, "Alert webhook deliveries dropped from a full queue");
        loop {
            match transitions.recv().await {
                Ok(alert) => self.dispatch(&alert, &external_url).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.count_dropped(missed);
                    tracing::warn!(missed, "alert transitions were dropped before reaching the sinks");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The sinks (`tenant/name`) whose last delivery from this node failed.
    pub fn failing(&self) -> Vec<String> {
        lock(&self.failing).iter().cloned().collect()
    }

    /// Deliveries dropped because a queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Forgets how a sink's deliveries went, when it is replaced or deleted.
    pub fn forget(&self, tenant: &str, sink: &str) {
        lock(&self.failing).remove(&lane_key(tenant, sink));
    }

    fn count_dropped(&self, deliveries: u64) {
        self.dropped.fetch_add(deliveries, Ordering::Relaxed);
        metrics::counter!(DROPPED_METRIC).increment(deliveries);
    }

    async fn dispatch(self: &Arc<Self>, alert: &Alert, external_url: &str) {
        let sinks = match self.db.sinks(&alert.labels.tenant).await {
            Ok(sinks) => sinks,
            Err(err) => {
                tracing::warn!(alert = %alert.id, error = format!("{err:#}"), "cannot read the alert sinks");
                return;
            }
        };
        for sink in sinks {
            match webhook_body(alert, &sink.name, external_url) {
                Ok(body) => self.enqueue(delivery_of(sink, body)),
                Err(err) => tracing::warn!(alert = %alert.id, error = format!("{err:#}"), "cannot build a webhook"),
            }
        }
    }

    fn enqueue(self: &Arc<Self>, delivery: Delivery) {
        let key = delivery.lane();
        let mut lanes = lock(&self.lanes);
        if let Some(queue) = lanes.get_mut(&key) {
            if queue.len() >= self.settings.queue.max(1) {
                queue.pop_front();
                self.count_dropped(1);
                tracing::warn!(sink = %key, "an alert sink's queue is full; its oldest delivery was dropped");
            }
            queue.push_back(delivery);
        } else {
            lanes.insert(key.clone(), VecDeque::from([delivery]));
            tokio::spawn(Arc::clone(self).drain(key));
        }
    }

    /// Delivers a lane's queue in order; ends (removing the lane, under the
    /// same lock `enqueue` takes) when it is empty.
    async fn drain(self: Arc<Self>, key: String) {
        loop {
            let next = {
                let mut lanes = lock(&self.lanes);
                match lanes.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(delivery) => delivery,
                    None => {
                        lanes.remove(&key);
                        return;
                    }
                }
            };
            self.deliver(&next).await;
        }
    }

    /// Attempts a delivery until it succeeds, cannot succeed, or runs out of attempts.
    async fn deliver(&self, delivery: &Delivery) {
        let mut backoff = self.settings.first_backoff;
        let attempts = self.settings.attempts.max(1);
        for attempt in 1..=attempts {
            let failure = match self.attempt(delivery).await {
                Ok(()) => return self.record(delivery, None).await,
                Err(failure) => failure,
            };
            tracing::info!(sink = %delivery.lane(), attempt, reason = %failure.reason, "alert delivery failed");
            if !failure.retry || attempt == attempts {
                let outcome = format!("failed after {attempt} attempt(s): {}", failure.reason);
                return self.record(delivery, Some(outcome)).await;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }

    async fn attempt(&self, delivery: &Delivery) -> Result<(), Failure> {
        let url = check_url(&delivery.url, self.settings.allow_private)
            .map_err(|err| Failure { reason: err.to_string(), retry: false })?;
        let headers = headers(&delivery.secret, &delivery.body)
            .map_err(|err| Failure { reason: format!("{err:#}"), retry: false })?;
        let answer = crate::engine::post(
            &url,
            headers,
            delivery.body.clone(),
            self.settings.allow_private,
            self.settings.attempt_timeout,
        )
        .await;
        match answer {
            Ok(status) if status.is_success() => Ok(()),
            // A sink that refuses the payload would refuse it again.
            Ok(status) => Err(Failure {
                reason: format!("the sink answered {status}"),
                retry: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            }),
            Err(err @ (PostError::PrivateAddress | PostError::InvalidUrl)) => {
                Err(Failure { reason: err.to_string(), retry: false })
            }
            Err(err) => Err(Failure { reason: err.to_string(), retry: true }),
        }
    }

    async fn record(&self, delivery: &Delivery, failure: Option<String>) {
        let key = delivery.lane();
        match &failure {
            None => lock(&self.failing).remove(&key),
            Some(reason) => {
                tracing::warn!(sink = %key, reason, "an alert could not be delivered");
                lock(&self.failing).insert(key)
            }
        };
        let label = if failure.is_some() { "failed" } else { "ok" };
        metrics::counter!(DELIVERIES_METRIC, "outcome" => label).increment(1);
        let outcome = failure.as_deref().unwrap_or("ok");
        if let Err(err) = self.db.set_sink_delivery(&delivery.tenant, &delivery.sink, outcome).await {
            tracing::warn!(error = format!("{err:#}"), "cannot record an alert delivery");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent across a panic: every update is one call.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn delivery_of(sink: SinkRow, body: Bytes) -> Delivery {
    Delivery { tenant: sink.tenant, sink: sink.name, url: sink.url, secret: sink.secret, body }
}

/// The headers of a webhook POST, its signature among them.
fn headers(secret: &str, body: &[u8]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(http::header::USER_AGENT, HeaderValue::from_static(concat!("muon/", env!("CARGO_PKG_VERSION"))));
    headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&signature(secret, body)?)?);
    Ok(headers)
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

/// Alertmanager's webhook payload, version 4: a group of one alert.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Webhook<'a> {
    receiver: &'a str,
    status: &'static str,
    alerts: [WebhookAlert; 1],
    group_labels: BTreeMap<&'static str, String>,
    common_labels: BTreeMap<&'static str, String>,
    common_annotations: BTreeMap<&'static str, String>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    version: &'static str,
    group_key: String,
    truncated_alerts: u32,
}

/// One alert of the payload.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: &'static str,
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

/// The `endsAt` of an alert that has not ended, as Alertmanager writes it.
const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

/// The JSON body posted to sink `receiver` for `alert`.
fn webhook_body(alert: &Alert, receiver: &str, external_url: &str) -> anyhow::Result<Bytes> {
    let labels = labels(&alert.labels);
    let annotations = BTreeMap::from([
        ("summary", alert.summary.clone()),
        ("value", alert.value.to_string()),
        ("baseline", alert.baseline.to_string()),
    ]);
    let status = alert.state.as_str();
    let group_key = format!(
        "{{}}:{{{}}}",
        labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect::<Vec<_>>().join(", ")
    );
    let webhook = Webhook {
        receiver,
        status,
        alerts: [WebhookAlert {
            status,
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at: crate::clock::rfc3339(alert.starts_at_ms),
            ends_at: match (alert.state, alert.ends_at_ms) {
                (AlertState::Resolved, Some(ends_at_ms)) => crate::clock::rfc3339(ends_at_ms),
                _ => NOT_ENDED.to_owned(),
            },
            generator_url: generator_url(external_url, &alert.labels),
            fingerprint: fingerprint(&labels),
        }],
        group_labels: labels.clone(),
        common_labels: labels,
        common_annotations: annotations,
        external_url,
        version: "4",
        group_key,
        truncated_alerts: 0,
    };
    Ok(Bytes::from(serde_json::to_vec(&webhook)?))
}

/// The alert's labels as Alertmanager's: `alertname` is the detector.
fn labels(labels: &AlertLabels) -> BTreeMap<&'static str, String> {
    let mut map = BTreeMap::from([("alertname", labels.detector.clone()), ("tenant", labels.tenant.clone())]);
    let optional = [
        ("function", labels.function.clone()),
        ("version", labels.version.map(|v| v.to_string())),
        ("model", labels.model.clone()),
        ("feature", labels.feature.clone()),
    ];
    map.extend(optional.into_iter().filter_map(|(name, value)| Some((name, value?))));
    map
}

/// Where a person sees what the alert is about: the function's or model's
/// statistics, or the tenant's alerts.
fn generator_url(external_url: &str, labels: &AlertLabels) -> String {
    let base = external_url.trim_end_matches('/');
    match (&labels.function, &labels.model) {
        (Some(function), _) => format!("{base}/v1/functions/{function}/stats"),
        (None, Some(model)) => format!("{base}/v1/models/{model}/stats"),
        (None, None) => format!("{base}/v1/alerts"),
    }
}

/// 16 hex digits identifying the label set, like Alertmanager's fingerprint.
fn fingerprint(labels: &BTreeMap<&'static str, String>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in labels {
        hash.update(name.as_bytes());
        hash.update([0xff]);
        hash.update(value.as_bytes());
        hash.update([0xff]);
    }
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
#[path = "sinks_tests.rs"]
mod tests;
