//! Function calls as the router sees them: who may call, tenant admission,
//! the call itself, then metering and the ledger before the response leaves.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use hyper::body::{Body as _, Incoming};

use super::App;
use super::body::{self, Body};
use crate::auth::{Principal, now_ms};
use crate::db::UsageRecord;
use crate::engine::FunctionKind;
use crate::error::ApiError;
use crate::invoke;
use crate::metering::Measurement;
use crate::registry::{FunctionName, Version};

/// `ANY /fn/{tenant}/{name}/{*rest}`: a handler or wasi:http function.
pub async fn call_http_function(
    app: &App,
    request: http::Request<Incoming>,
    tenant: &str,
    name: &str,
    rest: &str,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let version = visible_function(app, request.headers(), tenant, name).await?;
    let (parts, incoming) = request.into_parts();
    metered(app, version, request_id, async move |version, usage: &mut CallUsage| {
        let body = body::read_limited(&parts.headers, incoming, app.config.max_request_bytes).await?;
        usage.bytes_in = body.len();
        match version.entry.kind() {
            FunctionKind::Handler => {
                invoke::call_handler(app, version, &parts, rest, body, request_id, &mut usage.guest).await
            }
            FunctionKind::Http => {
                let path_and_query = match parts.uri.query() {
                    Some(query) => format!("{rest}?{query}"),
                    None => rest.to_owned(),
                };
                invoke::call_http(app, version, parts, &path_and_query, body, request_id, &mut usage.guest).await
            }
            kind @ (FunctionKind::Preprocessor | FunctionKind::TrainingStep) => Err(ApiError::BadRequest(format!(
                "`{name}` is a {} function; call it with POST /v1/functions/{name}/invoke",
                kind.as_str()
            ))),
        }
    })
    .await
}

/// `POST /v1/functions/{name}/invoke`: a typed function with JSON in and out.
pub async fn call_typed_function(
    app: &App,
    principal: &Principal,
    request: http::Request<Incoming>,
    name: &FunctionName,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let version = app
        .registry
        .get(&principal.tenant, name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("function `{name}`")))?;
    let (parts, incoming) = request.into_parts();
    metered(app, version, request_id, async move |version, usage: &mut CallUsage| {
        let input = body::read_limited(&parts.headers, incoming, app.config.max_request_bytes).await?;
        usage.bytes_in = input.len();
        let output = invoke::typed::invoke_typed(app, version, &input, request_id, &mut usage.guest).await?;
        Ok(body::json_bytes_response(StatusCode::OK, output))
    })
    .await
}

/// The function, if the caller may see it. Public functions need no key.
/// Without a valid key every private or missing function is `401`, and with
/// another tenant's key it is `404`: nothing tells a stranger what exists.
async fn visible_function(
    app: &App,
    headers: &http::HeaderMap,
    tenant: &str,
    name: &str,
) -> Result<Arc<Version>, ApiError> {
    let version = app.registry.get(tenant, name);
    if let Some(version) = version.as_ref().filter(|v| v.record.public) {
        return Ok(Arc::clone(version));
    }
    let principal = app.auth.authenticate(headers).await?;
    version
        .filter(|_| principal.can_access(tenant))
        .ok_or_else(|| ApiError::NotFound(format!("function `{tenant}/{name}`")))
}

/// What the router measures around a call, beyond the guest's own figures.
#[derive(Default)]
struct CallUsage {
    bytes_in: usize,
    guest: Measurement,
}

/// Admits the request for its tenant, runs `call`, and writes the usage
/// record (durably, before the response is returned). A ledger failure
/// replaces the response with `503`: nothing is served unbilled.
async fn metered<F>(
    app: &App,
    version: Arc<Version>,
    request_id: &str,
    call: F,
) -> Result<http::Response<Body>, ApiError>
where
    F: AsyncFnOnce(Arc<Version>, &mut CallUsage) -> Result<http::Response<Body>, ApiError>,
{
    let start_ms = now_ms();
    let started = Instant::now();
    let mut usage = CallUsage::default();
    let tenant = version.record.tenant.clone();
    let result = match app.tenancy.admit(&tenant).await {
        Ok(permit) => {
            let result = call(Arc::clone(&version), &mut usage).await;
            drop(permit);
            result
        }
        Err(rejected) => Err(rejected),
    };
    let code = result.as_ref().err().map(ApiError::code);
    version.metrics.record(started, code);
    let Some(ledger) = &app.ledger else { return result };
    let bytes_out = match &result {
        Ok(response) => response.body().size_hint().exact().unwrap_or(0),
        Err(_) => 0,
    };
    let mut record = UsageRecord {
        request_id: request_id.to_owned(),
        tenant: tenant.clone(),
        function: version.record.name.clone(),
        version: version.record.version,
        start_ms,
        wall_us: micros(started.elapsed()),
        cpu_us: micros(usage.guest.cpu),
        peak_memory_bytes: i64::try_from(usage.guest.peak_memory_bytes).unwrap_or(i64::MAX),
        memory_byte_ms: i64::try_from(usage.guest.memory_byte_ms).unwrap_or(i64::MAX),
        nn_cpu_us: i64::try_from(usage.guest.nn_cpu_us).unwrap_or(i64::MAX),
        nn_gpu_us: i64::try_from(usage.guest.nn_gpu_us).unwrap_or(i64::MAX),
        bytes_in: i64::try_from(usage.bytes_in).unwrap_or(i64::MAX),
        bytes_out: i64::try_from(bytes_out).unwrap_or(i64::MAX),
        outcome: code.unwrap_or("ok").to_owned(),
        cost_micros: 0,
    };
    // Rejected by a quota or rate limit: recorded, but nothing ran, so free.
    if !matches!(code, Some("quota_exceeded" | "rate_limited")) {
        record.cost_micros = app.tenancy.plan(&tenant).await?.cost(&record);
    }
    let cost = record.cost_micros;
    ledger.record(record).await?;
    app.tenancy.charge(&tenant, cost).await;
    version.metrics.record_cost(cost);
    result
}

fn micros(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}
