//! `/v1/usage`: usage totals and raw records from the ledger.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How usage totals are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per function name.
    #[default]
    Function,
    /// One group per UTC day; the group is the day's first instant in Unix milliseconds.
    Day,
    /// One group per hour; the group is the hour's first instant in Unix milliseconds.
    Hour,
}

impl GroupBy {
    /// The grouping as it appears in the query.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Day => "day",
            Self::Hour => "hour",
        }
    }
}

/// Query parameters of `GET /v1/usage`. Times are Unix milliseconds or a
/// date `YYYY-MM-DD` (midnight UTC), years 1970 to 9999.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// From this instant, inclusive [default: the beginning].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// To this instant, exclusive [default: now].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only this function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The grouping [default: function].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    /// Another tenant's usage (admin key) [default: the key's tenant].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Query parameters of `GET /v1/usage/records`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageRecordsQuery {
    /// Records after this request id (the previous page's `next_after`) [default: from the first].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Records per page, 1 to 1000 [default: 100].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Another tenant's records (admin key) [default: the key's tenant].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Totals of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageTotals {
    /// The function's name, or the first instant of the day or hour in Unix milliseconds.
    pub group: String,
    /// Requests served.
    pub requests: i64,
    /// CPU time running the guest, in milliseconds.
    pub cpu_ms: f64,
    /// Wall time, in milliseconds.
    pub wall_ms: f64,
    /// Guest memory integrated over wall time, in GB-seconds.
    pub gb_seconds: f64,
    /// Time in wasi-nn compute (CPU and GPU), in milliseconds.
    pub compute_ms: f64,
    /// Request bytes received.
    pub bytes_in: i64,
    /// Response bytes sent.
    pub bytes_out: i64,
    /// What it cost, in micro-units.
    pub cost_micros: i64,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageGroups {
    /// The tenant whose usage this is.
    pub tenant: String,
    /// One entry per group, in group order.
    pub groups: Vec<UsageTotals>,
}

/// What one request used, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// The request's id (its `x-muon-request-id` header).
    pub request_id: String,
    /// The tenant billed.
    pub tenant: String,
    /// The function called.
    pub function: String,
    /// The version that ran.
    pub version: i64,
    /// When the request started, in Unix milliseconds.
    pub start_ms: i64,
    /// Wall time, in microseconds.
    pub wall_us: i64,
    /// CPU time running the guest, in microseconds.
    pub cpu_us: i64,
    /// Largest guest memory, in bytes.
    pub peak_memory_bytes: i64,
    /// Guest memory integrated over wall time, in byte-milliseconds.
    pub memory_byte_ms: i64,
    /// Time in wasi-nn compute on CPU, in microseconds.
    pub nn_cpu_us: i64,
    /// Time in wasi-nn compute on GPU, in microseconds.
    pub nn_gpu_us: i64,
    /// Request bytes received.
    pub bytes_in: i64,
    /// Response bytes sent.
    pub bytes_out: i64,
    /// `ok`, or the error code the client saw.
    pub outcome: String,
    /// What it cost, in micro-units.
    pub cost_micros: i64,
}

/// `GET /v1/usage/records`: one page of records, in request-id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecords {
    /// The records of this page.
    pub records: Vec<UsageRecord>,
    /// The `after` of the next page; `null` when this page is empty.
    pub next_after: Option<String>,
}
