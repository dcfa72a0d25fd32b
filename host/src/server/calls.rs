//! Function calls as the router sees them: who may call, the request body,
//! admission (the tenant's limits, or a public function's anonymous budget),
//! the call through the invoker, then the settle path before the response
//! leaves.
//!
//! The body is read before any limit is taken, so a client that sends it
//! slowly holds none of the tenant's permits while it does.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::App;
use super::body::{self, Body};
use super::error::{ApiError, outcome_of};
use crate::clock::now_ms;
use crate::db::{Db, NewAudit};
use crate::engine::FunctionKind;
use crate::invoke::{self, Caller as Identity, Finished, Input, Output, Streamed};
use crate::metering::Measurement;
use crate::names::FunctionName;
use crate::registry::{Breaker, Ticket, Transition, Verdict, Version};
use crate::settle::{SettleError, Settler, Work};
use crate::tenancy::TenantPermit;

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
    let bytes_in = body.len();
    let input = match version.entry.kind() {
        FunctionKind::Handler | FunctionKind::Streaming => {
            Ok(Input::Handler(invoke::handler::request(&parts, rest, body)))
        }
        FunctionKind::Http => {
            let path_and_query = match parts.uri.query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_owned(),
            };
            invoke::http::request(parts, &path_and_query, body).map(Input::Http).map_err(ApiError::from)
        }
        kind @ (FunctionKind::Preprocessor | FunctionKind::TrainingStep) => Err(ApiError::BadRequest(format!(
            "`{name}` is a {} function; call it with POST /v1/functions/{name}/invoke",
            kind.as_str()
        ))),
    };
    metered(app, &version, caller, request_id, bytes_in, input, |output| match output {
        Output::Http(response) => Ok(Answer::Whole(response)),
        Output::Stream(streamed) => Ok(Answer::Stream(streamed)),
        _ => Err(ApiError::Internal(anyhow::anyhow!("an HTTP function returned a typed output"))),
    })
    .await
}

/// `POST /v1/functions/{name}/invoke`: a typed function with JSON in and out.
pub async fn call_typed_function(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &FunctionName,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let version =
        app.registry.route(tenant, name.as_str()).ok_or_else(|| ApiError::NotFound(format!("function `{name}`")))?;
    let (parts, incoming) = request.into_parts();
    let json = app.bodies.read(&parts.headers, incoming, app.config.max_request_bytes).await?;
    let input = invoke::typed::input(version.entry.kind(), &json).map_err(ApiError::from);
    let limit = app.invoker.max_output_bytes();
    let mut response = metered(app, &version, Caller::Owner, request_id, json.len(), input, |output| {
        Ok(Answer::Whole(http::Response::new(Bytes::from(invoke::typed::output(&output, limit)?))))
    })
    .await?;
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
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
    let version = app.registry.route(tenant, name);
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

/// What a call answers with.
enum Answer {
    /// A whole response, settled before it leaves.
    Whole(http::Response<Bytes>),
    /// A response the function is still writing, settled when it ends.
    Stream(Streamed),
}

/// A call being metered: what its settling needs besides its outcome.
struct Metering {
    version: Arc<Version>,
    request_id: String,
    start_ms: i64,
    started: Instant,
    bytes_in: u64,
}

/// Asks the function's circuit breaker (if it has one), admits the call
/// under `caller`'s limits, runs it (an input that could not be formed fails
/// the call), shapes its output with `respond`, tells the breaker how it
/// went, and settles it, failures and refusals included: the usage record is
/// in the ledger before a whole response is returned. A ledger failure
/// replaces the response with `503`: nothing is served unbilled.
///
/// A streamed response leaves at once; its call is settled (once, through
/// the same path) when the guest ends or is stopped and the client has the
/// body, by a task that holds the call's permits until then.
async fn metered(
    app: &App,
    version: &Arc<Version>,
    caller: Caller,
    request_id: &str,
    bytes_in: usize,
    input: Result<Input, ApiError>,
    respond: impl FnOnce(Output) -> Result<Answer, ApiError>,
) -> Result<http::Response<Body>, ApiError> {
    let call = Metering {
        version: Arc::clone(version),
        request_id: request_id.to_owned(),
        start_ms: now_ms(),
        started: Instant::now(),
        bytes_in: bytes_in as u64,
    };
    let (result, used, ticket) = match version.breaker.as_ref().map(Breaker::admit).transpose() {
        // Refused before the tenant's limits are touched: an open breaker costs the caller nothing.
        Err(open) => (Err(ApiError::from(open)), Measurement::default(), None),
        Ok(ticket) => {
            let (result, used, permit) = admitted_run(app, version, caller, request_id, input, respond).await;
            if let Ok(Answer::Stream(streamed)) = result {
                let Streamed { response, finished } = streamed;
                let (settler, db) = (Arc::clone(&app.settler), app.db.clone());
                tokio::spawn(async move {
                    let Finished { result, used, bytes_out } = finished.await;
                    drop(permit);
                    let result = result.map_err(ApiError::from);
                    if let Err(err) = settle(&settler, &db, &call, ticket, &result, &used, bytes_out).await {
                        // The body is out already; the ledger's own alarms cover its failure.
                        tracing::error!(request_id = %call.request_id, %err, "cannot settle a streamed call");
                    }
                });
                return Ok(response.map(BodyExt::boxed_unsync));
            }
            (result, used, ticket)
        }
    };
    let result = result.and_then(|answer| match answer {
        Answer::Whole(response) => Ok(response),
        Answer::Stream(_) => Err(ApiError::Internal(anyhow::anyhow!("a streamed answer was not streamed"))),
    });
    let bytes_out = result.as_ref().map_or(0, |response| response.body().len() as u64);
    settle(&app.settler, &app.db, &call, ticket, &result, &used, bytes_out).await?;
    result.map(|response| response.map(body::full))
}

/// Tells the breaker how the call went and settles it.
async fn settle<T>(
    settler: &Settler,
    db: &Db,
    call: &Metering,
    ticket: Option<Ticket>,
    result: &Result<T, ApiError>,
    used: &Measurement,
    bytes_out: u64,
) -> Result<i64, SettleError> {
    let version = &call.version;
    if let Some(ticket) = ticket {
        let verdict = Verdict::of(result.as_ref().err().map(ApiError::code));
        if let Some(transition) = ticket.report(verdict) {
            record_transition(db, version, transition);
        }
    }
    let work = Work {
        id: &call.request_id,
        tenant: version.record.tenant.as_str(),
        function: &version.record.name,
        version: version.record.version,
        start_ms: call.start_ms,
        started: call.started,
        bytes_in: call.bytes_in,
        bytes_out,
        metrics: &version.metrics,
        stats: Some(&version.stats),
    };
    settler.settle(work, used, outcome_of(result)).await
}

/// Admits the call under `caller`'s limits and runs it; the tenant's permit
/// comes back with the answer, for a streamed one to hold until it ends.
async fn admitted_run(
    app: &App,
    version: &Arc<Version>,
    caller: Caller,
    request_id: &str,
    input: Result<Input, ApiError>,
    respond: impl FnOnce(Output) -> Result<Answer, ApiError>,
) -> (Result<Answer, ApiError>, Measurement, Option<TenantPermit>) {
    let tenant = version.record.tenant.as_str();
    let admitted = match caller {
        Caller::Owner => app.tenancy.admit(tenant).await,
        Caller::Anonymous => app.tenancy.admit_anonymous(tenant, &version.admission.anonymous).await,
    }
    .map_err(ApiError::from);
    match (admitted, input) {
        (Ok(permit), Ok(input)) => {
            let (output, used) =
                app.invoker.run(version, input, None, Identity { work_id: request_id, log: None }).await;
            (output.map_err(ApiError::from).and_then(respond), used, Some(permit))
        }
        (Err(err), _) | (Ok(_), Err(err)) => (Err(err), Measurement::default(), None),
    }
}

/// Logs a breaker's opening or closing and appends it to the audit log, off
/// the request's path: the answer does not wait for the database.
fn record_transition(db: &Db, version: &Version, transition: Transition) {
    let Some(settings) = version.breaker.as_ref().map(|b| b.settings()) else { return };
    let (state, message) = match transition {
        Transition::Opened => (
            "open",
            format!(
                "the circuit breaker of `{}` opened after {} host-side failures in a row; calls are refused for {} s",
                version.record.name,
                settings.failures,
                settings.cooldown_s()
            ),
        ),
        Transition::Closed => (
            "closed",
            format!("the circuit breaker of `{}` closed: a call succeeded after the cool-down", version.record.name),
        ),
    };
    tracing::warn!(function = %version.label, version = version.record.version, state, "circuit breaker");
    let db = db.clone();
    let (tenant, subject) = (version.record.tenant.clone(), version.record.name.clone());
    let detail = serde_json::json!({
        "state": state,
        "version": version.record.version,
        "failures": settings.failures,
        "cooldown_s": settings.cooldown_s(),
    });
    tokio::spawn(async move {
        db.audit_or_log(NewAudit { tenant: &tenant, kind: "breaker", subject: &subject, message: &message, detail })
            .await;
    });
}
