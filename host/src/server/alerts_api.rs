//! `/v1/alerts`, `/v1/alerts/sinks` and `/v1/events`: a tenant's alerts,
//! the webhooks they are posted to, and its audit log. Every route reads
//! and writes the caller's own tenant only, so another tenant's sink is
//! `404` like one that does not exist.

use http::StatusCode;
use hyper::body::Incoming;

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use super::usage_api::pairs;
use crate::api::{
    AlertList, AlertQuery, AlertState, AuditEvent, AuditEventList, AuditQuery, Deleted, Sink, SinkList, SinkRequest,
};
use crate::db::SinkRow;

/// Alerts or events a page holds unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;

/// The longest secret accepted, in bytes.
const MAX_SECRET_LEN: usize = 1024;

/// `GET /v1/alerts?state=firing|resolved&limit=N`, newest first.
pub async fn alerts(app: &App, tenant: &str, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let query = alert_query(query)?;
    let alerts = app.monitor.alerts().list(tenant, query.state, query.limit.unwrap_or(DEFAULT_LIMIT)).await?;
    Ok(body::json_response(StatusCode::OK, &AlertList { alerts }))
}

/// `GET /v1/events?after=ID&limit=N&kind=K`, oldest first.
pub async fn events(app: &App, tenant: &str, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let query = audit_query(query)?;
    let after = query.after.unwrap_or(0);
    let limit = i64::from(query.limit.unwrap_or(DEFAULT_LIMIT));
    let rows = app.db.audit_events(tenant, after, query.kind.as_deref(), limit).await?;
    let events = rows
        .into_iter()
        .map(|row| AuditEvent {
            id: row.id,
            at_ms: row.at_ms,
            kind: row.kind,
            subject: row.subject,
            message: row.message,
            // Written by muon as JSON; text that is not stays readable as a string.
            detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::String(row.detail)),
        })
        .collect::<Vec<_>>();
    let next_after = events.last().map_or(after, |event| event.id);
    Ok(body::json_response(StatusCode::OK, &AuditEventList { events, next_after }))
}

/// `PUT /v1/alerts/sinks/{name}` with a [`SinkRequest`]: `201` for a new
/// sink, `200` for one replaced.
pub async fn put_sink(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    crate::names::check_sink_name(name)?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.config.max_request_bytes).await?;
    let sink: SinkRequest = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::BadRequest(format!("invalid sink: {err}; send {{\"url\": ..., \"secret\": ...}}")))?;
    crate::monitor::check_sink_url(&sink.url, app.monitor.sinks().settings().allow_private)?;
    if sink.secret.is_empty() {
        return Err(crate::monitor::SinkError::EmptySecret.into());
    }
    if sink.secret.len() > MAX_SECRET_LEN {
        return Err(ApiError::BadRequest(format!("the secret is longer than {MAX_SECRET_LEN} bytes")));
    }
    let existed = app.db.sinks(tenant).await?.iter().any(|row| row.name == name);
    let row = SinkRow {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        url: sink.url,
        secret: sink.secret,
        created_at_ms: crate::clock::now_ms(),
        last_delivery: None,
    };
    app.db.put_sink(&row).await?;
    app.monitor.sinks().forget(tenant, name);
    tracing::info!(tenant, sink = name, url = %row.url, "alert sink registered");
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok(body::json_response(status, &sink_of(row)))
}

/// `GET /v1/alerts/sinks`, without their secrets.
pub async fn sinks(app: &App, tenant: &str) -> Result<http::Response<Body>, ApiError> {
    let sinks = app.db.sinks(tenant).await?.into_iter().map(sink_of).collect();
    Ok(body::json_response(StatusCode::OK, &SinkList { sinks }))
}

/// `DELETE /v1/alerts/sinks/{name}`.
pub async fn delete_sink(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    if !app.db.delete_sink(tenant, name).await? {
        return Err(ApiError::NotFound(format!("alert sink `{name}`")));
    }
    app.monitor.sinks().forget(tenant, name);
    tracing::info!(tenant, sink = name, "alert sink deleted");
    Ok(body::json_response(StatusCode::OK, &Deleted { deleted: name.to_owned() }))
}

fn sink_of(row: SinkRow) -> Sink {
    Sink { name: row.name, url: row.url, created_at_ms: row.created_at_ms, last_delivery: row.last_delivery }
}

/// `limit`: 1 to 1000.
fn limit(value: &str) -> Result<u32, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to 1000, got `{value}`")))
}

fn alert_query(query: Option<&str>) -> Result<AlertQuery, ApiError> {
    let mut params = AlertQuery::default();
    for (key, value) in pairs(query, &["state", "limit"])? {
        if key == "limit" {
            params.limit = Some(limit(&value)?);
            continue;
        }
        params.state = Some(match value.as_str() {
            "firing" => AlertState::Firing,
            "resolved" => AlertState::Resolved,
            other => return Err(ApiError::BadRequest(format!("state must be firing or resolved, got `{other}`"))),
        });
    }
    Ok(params)
}

fn audit_query(query: Option<&str>) -> Result<AuditQuery, ApiError> {
    let mut params = AuditQuery::default();
    for (key, value) in pairs(query, &["after", "limit", "kind"])? {
        match key.as_str() {
            "after" => {
                params.after = Some(value.parse().ok().filter(|after: &i64| *after >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("after must be the id of an event (0 or more), got `{value}`"))
                })?);
            }
            "limit" => params.limit = Some(limit(&value)?),
            // `kind`: `pairs` lets no other name through.
            _ => params.kind = Some(value).filter(|kind| !kind.is_empty()),
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_strictly() {
        let alerts = alert_query(Some("state=firing&limit=5")).ok();
        assert_eq!(alerts, Some(AlertQuery { state: Some(AlertState::Firing), limit: Some(5) }));
        let events = audit_query(Some("after=12&kind=job_state")).ok();
        assert_eq!(events, Some(AuditQuery { after: Some(12), limit: None, kind: Some("job_state".to_owned()) }));
        for (bad, message) in [
            (alert_query(Some("status=firing")).err(), "unknown parameter `status`"),
            (alert_query(Some("state=open")).err(), "state must be firing or resolved"),
            (alert_query(Some("limit=0")).err(), "limit must be 1 to 1000"),
            (audit_query(Some("after=-1")).err(), "after must be"),
            (audit_query(Some("before=3")).err(), "unknown parameter `before`"),
            (audit_query(Some("limit=1001")).err(), "limit must be 1 to 1000"),
        ] {
            let error = bad.map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(message), "{error}");
        }
    }
}
