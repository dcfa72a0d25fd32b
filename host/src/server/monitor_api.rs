//! Live statistics and the detectors' thresholds:
//! `GET /v1/functions/{name}/stats`, `GET /v1/models/{name}/stats`,
//! `GET`/`PUT /v1/monitor/thresholds` and `/v1/functions/{name}/thresholds`.

use std::collections::BTreeMap;

use http::StatusCode;
use hyper::body::Incoming;

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use super::usage_api::pairs;
use crate::api::{Percentiles, SeriesStats, Stats, ThresholdSettings, Thresholds, WindowPoint};
use crate::names::FunctionName;
use crate::stats::{SeriesKind, Window};

/// The longest window a stats query may ask for.
const MAX_WINDOW_S: u64 = 24 * 3600;
/// Largest thresholds body.
const MAX_THRESHOLDS_BYTES: u64 = 16 * 1024;

/// `GET /v1/functions/{name}/stats` and `GET /v1/models/{name}/stats`.
pub fn stats(
    app: &App,
    tenant: &str,
    kind: SeriesKind,
    name: &str,
    query: Option<&str>,
) -> Result<http::Response<Body>, ApiError> {
    let exists = match kind {
        SeriesKind::Function => app.registry.get(tenant, name).is_some(),
        SeriesKind::Model => app.models.get(tenant, name).is_some(),
    };
    let what = if kind == SeriesKind::Function { "function" } else { "model" };
    if !exists {
        return Err(ApiError::NotFound(format!("{what} `{name}`")));
    }
    let mut window_s = 15 * 60;
    for (_, value) in pairs(query, &["window"])? {
        window_s = parse_window(&value)?;
    }
    let store = app.monitor.stats();
    let window_ms = store.window_ms();
    let to_ms = crate::clock::now_ms();
    let from_ms = to_ms - i64::try_from(window_s * 1000).unwrap_or(i64::MAX);
    // Whole windows: the one the start falls in is in.
    let first_ms = from_ms - from_ms.rem_euclid(window_ms);
    let versions = store
        .versions(kind, tenant, name)
        .iter()
        .filter_map(|series| {
            let windows = series.windows(first_ms, i64::MAX);
            (!windows.is_empty()).then(|| series_stats(series.key().version, &windows, window_s))
        })
        .collect();
    let stats =
        Stats { name: name.to_owned(), window_s, from_ms, to_ms, covered_from_ms: store.started_ms(), versions };
    Ok(body::json_response(StatusCode::OK, &stats))
}

/// `30s`, `15m`, `2h`, `1d` (or plain seconds), at most a day.
fn parse_window(text: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest(format!("window must be like 30s, 15m, 2h or 1d (at most 24h), got `{text}`"));
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |at| text.split_at(at));
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = number.parse::<u64>().map_err(|_| bad())?.checked_mul(scale).ok_or_else(bad)?;
    if seconds == 0 || seconds > MAX_WINDOW_S {
        return Err(bad());
    }
    Ok(seconds)
}

fn series_stats(version: i64, windows: &[Window], window_s: u64) -> SeriesStats {
    let mut merged = Window::empty(0);
    for window in windows {
        merged.merge(window);
    }
    let mut outcomes: BTreeMap<String, u64> =
        merged.errors.iter().map(|(code, n)| (code.as_str().to_owned(), *n)).collect();
    outcomes.insert("ok".to_owned(), merged.requests - merged.error_count());
    let ms = |us: u64| us as f64 / 1000.0;
    let mut compute_ms = BTreeMap::new();
    if merged.nn_cpu_us > 0 {
        compute_ms.insert("cpu".to_owned(), ms(merged.nn_cpu_us));
    }
    if merged.nn_gpu_us > 0 {
        compute_ms.insert("gpu".to_owned(), ms(merged.nn_gpu_us));
    }
    SeriesStats {
        version,
        requests: merged.requests,
        rate_per_s: merged.requests as f64 / window_s as f64,
        outcomes,
        latency_ms: percentiles(&merged),
        cpu_ms: ms(merged.cpu_us),
        compute_ms,
        cost_micros: merged.cost_micros,
        windows: windows
            .iter()
            .map(|w| WindowPoint {
                start_ms: w.start_ms,
                requests: w.requests,
                errors: w.error_count(),
                latency_ms: percentiles(w),
            })
            .collect(),
    }
}

fn percentiles(window: &Window) -> Percentiles {
    Percentiles { p50: window.quantile_ms(0.5), p90: window.quantile_ms(0.9), p99: window.quantile_ms(0.99) }
}

/// `GET /v1/monitor/thresholds` (`function` `None`) and `GET /v1/functions/{name}/thresholds`.
pub fn thresholds(app: &App, tenant: &str, function: Option<&FunctionName>) -> Result<http::Response<Body>, ApiError> {
    let function = visible(app, tenant, function)?;
    let monitor = app.monitor.thresholds();
    let settings = ThresholdSettings {
        set: monitor.get(tenant, function),
        effective: monitor.effective(tenant, function).as_thresholds(),
    };
    Ok(body::json_response(StatusCode::OK, &settings))
}

/// `PUT /v1/monitor/thresholds` and `PUT /v1/functions/{name}/thresholds`:
/// replaces what was set at that level.
pub async fn set_thresholds(
    app: &App,
    tenant: &str,
    function: Option<&FunctionName>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, ApiError> {
    let function = visible(app, tenant, function)?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, MAX_THRESHOLDS_BYTES).await?;
    let set: Thresholds =
        serde_json::from_slice(&bytes).map_err(|err| ApiError::BadRequest(format!("invalid thresholds: {err}")))?;
    crate::monitor::check_thresholds(&set).map_err(ApiError::BadRequest)?;
    let monitor = app.monitor.thresholds();
    monitor.set(tenant, function, &set).await?;
    let effective = monitor.effective(tenant, function).as_thresholds();
    Ok(body::json_response(StatusCode::OK, &ThresholdSettings { set, effective }))
}

/// The function's name (`""` for the tenant's own level), if it exists.
fn visible<'a>(app: &App, tenant: &str, function: Option<&'a FunctionName>) -> Result<&'a str, ApiError> {
    match function {
        Some(name) if app.registry.get(tenant, name.as_str()).is_none() => {
            Err(ApiError::NotFound(format!("function `{name}`")))
        }
        Some(name) => Ok(name.as_str()),
        None => Ok(""),
    }
}
