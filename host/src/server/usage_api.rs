//! `/v1/usage`: totals and raw records from the ledger.

use http::StatusCode;

use super::App;
use super::body::{self, Body};
use crate::api::{self, UsageGroups, UsageRecords};
use crate::auth::{Principal, now_ms};
use crate::db::{GroupBy, UsageQuery, UsageRecord, UsageTotals};
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
            "from" => params.from = Some(parse_time("from", &value)?),
            "to" => params.to = Some(parse_time("to", &value)?),
            "function" => params.function = Some(value.into_owned()),
            "tenant" => params.tenant = Some(value.into_owned()),
            "after" => params.after = Some(value.into_owned()),
            "limit" => {
                params.limit = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to 1000, got `{value}`")))?,
                );
            }
            "group_by" => {
                params.group_by = Some(match value.as_ref() {
                    "function" => GroupBy::Function,
                    "day" => GroupBy::Day,
                    "hour" => GroupBy::Hour,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "group_by must be function, day or hour, got `{other}`"
                        )));
                    }
                });
            }
            _ => {}
        }
    }
    Ok(params)
}

/// The latest instant a usage query may name: 10000-01-01T00:00:00Z.
const MAX_TIME_MS: i64 = 253_402_300_800_000;

/// Query parameter `name`: Unix milliseconds, or a `YYYY-MM-DD` date
/// (midnight UTC), within years 1970 to 9999, so no arithmetic on it overflows.
fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    value.parse::<i64>().ok().or_else(|| parse_date(value)).filter(|ms| (0..=MAX_TIME_MS).contains(ms)).ok_or_else(
        || {
            ApiError::BadRequest(format!(
                "`{name}` must be Unix milliseconds from 0 to {MAX_TIME_MS} or a date YYYY-MM-DD \
                 from 1970-01-01 to 9999-12-31, got `{value}`"
            ))
        },
    )
}

/// A real calendar date `YYYY-MM-DD` of years 1970 to 9999, as Unix milliseconds.
fn parse_date(value: &str) -> Option<i64> {
    let mut parts = value.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, month, day) = (year.parse::<i64>().ok()?, month.parse::<u32>().ok()?, day.parse::<u32>().ok()?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let first = crate::tenancy::days_from_civil(year, month, 1);
    let next = if month == 12 {
        crate::tenancy::days_from_civil(year + 1, 1, 1)
    } else {
        crate::tenancy::days_from_civil(year, month + 1, 1)
    };
    (i64::from(day) <= next - first).then(|| (first + i64::from(day) - 1) * 86_400_000)
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
    let groups = app.db.usage_totals(&query).await?.into_iter().map(totals_of).collect();
    Ok(body::json_response(StatusCode::OK, &UsageGroups { tenant: query.tenant, groups }))
}

/// `GET /v1/usage/records?after=&limit=[&tenant=]`, in request-id order.
pub async fn records(app: &App, principal: &Principal, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let params = parse(query, &["after", "limit", "tenant"])?;
    let tenant = tenant_of(principal, params.tenant)?;
    let records =
        app.db.usage_records(&tenant, params.after.as_deref().unwrap_or(""), params.limit.unwrap_or(100)).await?;
    let next_after = records.last().map(|r| r.request_id.clone());
    let records = records.into_iter().map(record_of).collect();
    Ok(body::json_response(StatusCode::OK, &UsageRecords { records, next_after }))
}

fn totals_of(totals: UsageTotals) -> api::UsageTotals {
    let UsageTotals { group, requests, cpu_ms, wall_ms, gb_seconds, compute_ms, bytes_in, bytes_out, cost_micros } =
        totals;
    api::UsageTotals { group, requests, cpu_ms, wall_ms, gb_seconds, compute_ms, bytes_in, bytes_out, cost_micros }
}

fn record_of(record: UsageRecord) -> api::UsageRecord {
    let UsageRecord {
        request_id,
        tenant,
        function,
        version,
        start_ms,
        wall_us,
        cpu_us,
        peak_memory_bytes,
        memory_byte_ms,
        nn_cpu_us,
        nn_gpu_us,
        bytes_in,
        bytes_out,
        outcome,
        cost_micros,
    } = record;
    api::UsageRecord {
        request_id,
        tenant,
        function,
        version,
        start_ms,
        wall_us,
        cpu_us,
        peak_memory_bytes,
        memory_byte_ms,
        nn_cpu_us,
        nn_gpu_us,
        bytes_in,
        bytes_out,
        outcome,
        cost_micros,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_checked_before_any_arithmetic() {
        assert_eq!(parse_time("from", "1970-01-02").ok(), Some(86_400_000));
        assert_eq!(parse_time("from", "2024-02-29").ok(), Some(1_709_164_800_000));
        assert_eq!(parse_time("to", "9999-12-31").ok(), Some(MAX_TIME_MS - 86_400_000));
        assert_eq!(parse_time("to", "1700000000000").ok(), Some(1_700_000_000_000));
        for bad in [
            "99999999999999999-01-01",
            "9223372036854775807-12-31",
            "2023-02-29",
            "2024-04-31",
            "2024-00-10",
            "+2024-01-01",
            "1969-12-31",
            "-1",
            "9223372036854775807",
            "2024-01-01-01",
            "yesterday",
        ] {
            let err = parse_time("from", bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("`from` must be") && err.contains(bad), "{bad}: {err}");
        }
    }
}
