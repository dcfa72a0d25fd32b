//! `/v1/usage`: totals and raw records from the ledger.

use http::StatusCode;
use serde_json::json;

use super::App;
use super::body::{self, Body};
use crate::auth::{Principal, now_ms};
use crate::db::{GroupBy, UsageQuery};
use crate::error::ApiError;

/// Query parameters, parsed strictly.
#[derive(Default)]
struct Params {
    from: Option<i64>,
    to: Option<i64>,
    function: Option<String>,
    group_by: Option<GroupBy>,
    tenant: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
    let mut params = Params::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&key.as_ref()) {
            return Err(ApiError::BadRequest(format!("unknown parameter `{key}`; use {}", allowed.join(", "))));
        }
        match key.as_ref() {
            "from" => params.from = Some(parse_time(&value)?),
            "to" => params.to = Some(parse_time(&value)?),
            "function" => params.function = Some(value.into_owned()),
            "tenant" => params.tenant = Some(value.into_owned()),
            "after" => params.after = Some(value.into_owned()),
            "limit" => {
                params.limit = Some(value.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be 1 to 1000, got `{value}`"))
                })?);
            }
            "group_by" => {
                params.group_by = Some(match value.as_ref() {
                    "function" => GroupBy::Function,
                    "day" => GroupBy::Day,
                    "hour" => GroupBy::Hour,
                    other => {
                        return Err(ApiError::BadRequest(format!("group_by must be function, day or hour, got `{other}`")));
                    }
                });
            }
            _ => {}
        }
    }
    Ok(params)
}

/// Unix milliseconds, or a `YYYY-MM-DD` date (midnight UTC).
fn parse_time(value: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    let parts: Vec<&str> = value.split('-').collect();
    if let [y, m, d] = parts.as_slice()
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>())
        && (1..=12).contains(&m)
        && (1..=31).contains(&d)
    {
        return Ok(crate::tenancy::days_from_civil(y, m, d) * 86_400_000);
    }
    Err(ApiError::BadRequest(format!("`{value}` is neither Unix milliseconds nor a YYYY-MM-DD date")))
}

/// The tenant whose usage is asked for: the caller's own, or any for an admin.
fn tenant_of(principal: &Principal, asked: Option<String>) -> Result<String, ApiError> {
    match asked {
        None => Ok(principal.tenant.clone()),
        Some(tenant) if principal.can_access(&tenant) => Ok(tenant),
        Some(tenant) => Err(ApiError::NotFound(format!("tenant `{tenant}`"))),
    }
}

/// `GET /v1/usage?from=&to=&function=&group_by=function|day|hour[&tenant=]`.
pub async fn totals(app: &App, principal: &Principal, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let params = parse(query, &["from", "to", "function", "group_by", "tenant"])?;
    let query = UsageQuery {
        tenant: tenant_of(principal, params.tenant)?,
        from_ms: params.from.unwrap_or(0),
        to_ms: params.to.unwrap_or_else(|| now_ms() + 1),
        function: params.function,
        group_by: params.group_by.unwrap_or(GroupBy::Function),
    };
    let groups = app.db.usage_totals(&query).await?;
    Ok(body::json_response(StatusCode::OK, &json!({ "tenant": query.tenant, "groups": groups })))
}

/// `GET /v1/usage/records?after=&limit=[&tenant=]`, in request-id order.
pub async fn records(app: &App, principal: &Principal, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let params = parse(query, &["after", "limit", "tenant"])?;
    let tenant = tenant_of(principal, params.tenant)?;
    let records = app.db.usage_records(&tenant, params.after.as_deref().unwrap_or(""), params.limit.unwrap_or(100)).await?;
    let next_after = records.last().map(|r| r.request_id.clone());
    Ok(body::json_response(StatusCode::OK, &json!({ "records": records, "next_after": next_after })))
}
