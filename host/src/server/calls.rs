//! Function calls as the router sees them: who may call, the request body,
//! admission (the tenant's limits, or a public function's anonymous budget),
//! the call itself, then metering and the ledger before the response leaves.
//!
//! The body is read before any limit is taken, so a client that sends it
//! slowly holds none of the tenant's permits while it does.

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
    let (version, caller) = visible_function(app, request.headers(), tenant, name).await?;
    let (parts, incoming) = request.into_parts();
    let body = app.bodies.read(&parts.headers, incoming, app.config.max_request_bytes).await?;
    metered(app, version, caller, request_id, body.len(), async move |version, usage: &mut Measurement| {
        match version.entry.kind() {
            FunctionKind::Handler => invoke::call_handler(app, version, &parts, rest, body, request_id, usage).await,
            FunctionKind::Http => {
                let path_and_query = match parts.uri.query() {
                    Some(query) => format!("{rest}?{query}"),
                    None => rest.to_owned(),
                };
                invoke::call_http(app, version, parts, &path_and_query, body, request_id, usage).await
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
    let input = app.bodies.read(&parts.headers, incoming, app.config.max_request_bytes).await?;
    metered(app, version, Caller::Owner, request_id, input.len(), async move |version, usage: &mut Measurement| {
        let output = invoke::typed::invoke_typed(app, version, &input, request_id, usage).await?;
        Ok(body::json_bytes_response(StatusCode::OK, output))
    })
    .await
}

/// Whose limits a call spends.
#[derive(Clone, Copy)]
enum Caller {
    /// A holder of a key that may act for the function's tenant: the tenant's quotas.
    Owner,
    /// Anyone else calling a public function: the function's anonymous budget.
    Anonymous,
}

/// The function, if the caller may see it, and whose limits the call spends.
/// Public functions need no key. Without a valid key every private or
/// missing function is `401`, and with another tenant's key it is `404`:
/// nothing tells a stranger what exists.
async fn visible_function(
    app: &App,
    headers: &http::HeaderMap,
    tenant: &str,
    name: &str,
) -> Result<(Arc<Version>, Caller), ApiError> {
    let version = app.registry.get(tenant, name);
    if let Some(version) = version.as_ref().filter(|v| v.record.public) {
        let owner = headers.contains_key(http::header::AUTHORIZATION)
            && app.auth.authenticate(headers).await.is_ok_and(|principal| principal.can_access(tenant));
        return Ok((Arc::clone(version), if owner { Caller::Owner } else { Caller::Anonymous }));
    }
    let principal = app.auth.authenticate(headers).await?;
    version
        .filter(|_| principal.can_access(tenant))
        .map(|version| (version, Caller::Owner))
        .ok_or_else(|| ApiError::NotFound(format!("function `{tenant}/{name}`")))
}

/// Admits the request under `caller`'s limits, runs `call`, and writes the
/// usage record (durably, before the response is returned). A ledger failure
/// replaces the response with `503`: nothing is served unbilled.
async fn metered<F>(
    app: &App,
    version: Arc<Version>,
    caller: Caller,
    request_id: &str,
    bytes_in: usize,
    call: F,
) -> Result<http::Response<Body>, ApiError>
where
    F: AsyncFnOnce(Arc<Version>, &mut Measurement) -> Result<http::Response<Body>, ApiError>,
{
    let start_ms = now_ms();
    let started = Instant::now();
    let mut usage = Measurement::default();
    let tenant = version.record.tenant.clone();
    let admitted = match caller {
        Caller::Owner => app.tenancy.admit(&tenant).await,
        Caller::Anonymous => app.tenancy.admit_anonymous(&tenant, &version.admission.anonymous).await,
    };
    let result = match admitted {
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
        cpu_us: micros(usage.cpu),
        peak_memory_bytes: i64::try_from(usage.peak_memory_bytes).unwrap_or(i64::MAX),
        memory_byte_ms: i64::try_from(usage.memory_byte_ms).unwrap_or(i64::MAX),
        nn_cpu_us: i64::try_from(usage.nn_cpu_us).unwrap_or(i64::MAX),
        nn_gpu_us: i64::try_from(usage.nn_gpu_us).unwrap_or(i64::MAX),
        bytes_in: i64::try_from(bytes_in).unwrap_or(i64::MAX),
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
