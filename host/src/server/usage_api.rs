//! `/v1/usage`: totals and raw records from the ledger.

use http::StatusCode;

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{self, UsageGroups, UsageRecords};
use crate::auth::Principal;
use crate::clock::now_ms;
use crate::db::{GroupBy, UsageQuery};

/// The pairs of `query`, each named in `allowed`: any other is `400`.
pub(super) fn pairs(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(key, value)| {
            if allowed.contains(&key.as_ref()) {
                Ok((key.into_owned(), value.into_owned()))
            } else {
                Err(ApiError::BadRequest(format!("unknown parameter `{key}`; use {}", allowed.join(", "))))
            }
        })
        .collect()
}

/// `GET /v1/usage`'s parameters; the times are checked when used.
fn totals_query(query: Option<&str>) -> Result<api::UsageQuery, ApiError> {
    let mut params = api::UsageQuery::default();
    for (key, value) in pairs(query, &["from", "to", "function", "group_by", "tenant"])? {
        match key.as_str() {
            "from" => params.from = Some(value),
            "to" => params.to = Some(value),
            "function" => params.function = Some(value),
            "tenant" => params.tenant = Some(value),
            // `group_by`: `pairs` lets no other name through.
            _ => {
                params.group_by = Some(match value.as_str() {
                    "function" => api::GroupBy::Function,
                    "day" => api::GroupBy::Day,
                    "hour" => api::GroupBy::Hour,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "group_by must be function, day or hour, got `{other}`"
                        )));
                    }
                });
            }
        }
    }
    Ok(params)
}

/// `GET /v1/usage/records`'s parameters.
fn records_query(query: Option<&str>) -> Result<api::UsageRecordsQuery, ApiError> {
    let mut params = api::UsageRecordsQuery::default();
    for (key, value) in pairs(query, &["after", "limit", "tenant"])? {
        match key.as_str() {
            "after" => params.after = Some(value),
            "tenant" => params.tenant = Some(value),
            // `limit`: `pairs` lets no other name through.
            _ => {
                params.limit = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to 1000, got `{value}`")))?,
                );
            }
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
    let params = totals_query(query)?;
    let query = UsageQuery {
        from_ms: params.from.as_deref().map(|from| parse_time("from", from)).transpose()?.unwrap_or(0),
        to_ms: params.to.as_deref().map(|to| parse_time("to", to)).transpose()?.unwrap_or_else(|| now_ms() + 1),
        tenant: tenant_of(principal, params.tenant)?,
        function: params.function,
        group_by: match params.group_by.unwrap_or_default() {
            api::GroupBy::Function => GroupBy::Function,
            api::GroupBy::Day => GroupBy::Day,
            api::GroupBy::Hour => GroupBy::Hour,
        },
    };
    flush_ledger(app).await?;
    let groups = app.db.usage_totals(&query).await?;
    Ok(body::json_response(StatusCode::OK, &UsageGroups { tenant: query.tenant, groups }))
}

/// `GET /v1/usage/records?after=&limit=[&tenant=]`, in request-id order.
pub async fn records(app: &App, principal: &Principal, query: Option<&str>) -> Result<http::Response<Body>, ApiError> {
    let params = records_query(query)?;
    let tenant = tenant_of(principal, params.tenant)?;
    flush_ledger(app).await?;
    let records =
        app.db.usage_records(&tenant, params.after.as_deref().unwrap_or(""), params.limit.unwrap_or(100)).await?;
    let next_after = records.last().map(|r| r.request_id.clone());
    Ok(body::json_response(StatusCode::OK, &UsageRecords { records, next_after }))
}

/// Moves what this node journaled into the database, so that whoever reads
/// usage records next (a usage query, a tenant's spend this month) reads
/// every request answered before.
pub(super) async fn flush_ledger(app: &App) -> Result<(), ApiError> {
    match app.settler.ledger() {
        Some(ledger) => Ok(ledger.flush().await?),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_parsed_strictly_into_the_api_queries() {
        let totals = totals_query(Some("group_by=day&from=2024-01-01&function=f")).ok();
        assert_eq!(totals.as_ref().and_then(|q| q.group_by), Some(api::GroupBy::Day));
        assert_eq!(totals.as_ref().and_then(|q| q.from.as_deref()), Some("2024-01-01"));
        let records = records_query(Some("after=r1&limit=5")).ok();
        assert_eq!(records.map(|q| (q.after, q.limit)), Some((Some("r1".to_owned()), Some(5))));
        for (bad, message) in [
            (totals_query(Some("limit=5")).err(), "unknown parameter `limit`"),
            (totals_query(Some("group_by=week")).err(), "group_by must be"),
            (records_query(Some("from=1")).err(), "unknown parameter `from`"),
            (records_query(Some("limit=0")).err(), "limit must be 1 to 1000"),
        ] {
            let error = bad.map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(message), "{error}");
        }
    }

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
