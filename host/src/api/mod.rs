//! The HTTP API's types: what every route takes and answers, shared by the
//! server (which serializes them) and the CLI (which reads them back), and
//! the OpenAPI document derived from them ([`openapi::document`]).
//!
//! A leaf: nothing here knows the server, the database or the engine; the
//! conversions from those modules' types live in `server/`.

pub mod datasets;
pub mod functions;
pub mod jobs;
pub mod models;
pub mod monitor;
pub mod openapi;
pub mod tenants;
pub mod usage;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use datasets::{DatasetList, DatasetOptions, DatasetReport, DatasetSummary, RowsPage, RowsQuery};
pub use functions::{
    BreakerOptions, DeployQuery, FunctionDetail, FunctionKind, FunctionLimits, FunctionList, FunctionVersion,
    RolloutState,
};
pub use jobs::{Job, JobCreated, JobEvent, JobList, JobLogs, JobReport, JobSpec, JobState, TrialState};
pub use models::{
    Backend, BatchSettings, Batching, Dim, ElementType, Model, ModelList, ModelQuery, Target, TensorSpec,
};
pub use monitor::{
    Alert, AlertLabels, AlertList, AlertQuery, AlertState, AuditEvent, AuditEventList, AuditQuery, Percentiles,
    SeriesStats, Sink, SinkList, SinkRequest, Stats, StatsQuery, ThresholdSettings, Thresholds, WindowPoint,
};
pub use tenants::{IssuedKey, NewKey, NewTenant, Quotas, Tenant, TenantCreated, TenantList, TenantQuotas};
pub use usage::{GroupBy, UsageGroups, UsageQuery, UsageRecord, UsageRecords, UsageRecordsQuery, UsageTotals};

/// The body of every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's stable code and its message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, stable across releases: match on this.
    pub code: ErrorCode,
    /// What was wrong and what to do about it; the wording may change.
    pub message: String,
}

impl ErrorBody {
    /// The body of an error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code, message: message.into() } }
    }
}

/// Every error code the API answers with, and the status each comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `400`: the upload is not a component muon can run.
    InvalidComponent,
    /// `400`: the upload is not a model muon can serve.
    InvalidModel,
    /// `400`: the component imports an interface muon does not provide.
    UnknownImport,
    /// `413`: the request body is over its limit.
    BodyTooLarge,
    /// `408`: the request body did not arrive in time; the connection is closed.
    BodyTimeout,
    /// `431`: the request's headers are too many or too large, or its
    /// Content-Length is beyond any limit; the connection is closed.
    HeadersTooLarge,
    /// `503`: the server is receiving too many request bodies at once (`Retry-After`).
    BodiesBusy,
    /// `500`: the function answered with something that is not a valid HTTP response.
    InvalidResponse,
    /// `500`: the function's response is over the response size limit.
    ResponseTooLarge,
    /// `404`: no such route, or nothing by that name visible to the caller.
    NotFound,
    /// `401`: no valid API key (missing, malformed, unknown and revoked keys alike).
    Unauthorized,
    /// `429`: a tenant quota is used up (`Retry-After`).
    QuotaExceeded,
    /// `429`: the tenant's request rate is over its limit (`Retry-After`).
    RateLimited,
    /// `503`: the usage ledger cannot be written, so the request was not served (`Retry-After`).
    LedgerUnavailable,
    /// `409`: the name is taken, or the request conflicts with the current state.
    Conflict,
    /// `403`: the key is valid but may not do this (admin-only routes, another tenant's admin key).
    Forbidden,
    /// `405`: the route exists, but not for this method (`Allow` lists those it accepts).
    MethodNotAllowed,
    /// `400`: the request itself is malformed (a parameter, a name, the JSON body).
    BadRequest,
    /// `422`: a typed function rejected its input with its own error.
    FunctionError,
    /// `504`: the function did not finish within its deadline.
    Timeout,
    /// `500`: the function tried to grow its memory past its limit.
    MemoryLimit,
    /// `500`: the function trapped (panic, unreachable, stack overflow...).
    Trap,
    /// `503`: the function is at its concurrency limit and its queue is full (`Retry-After`).
    Overloaded,
    /// `503`: muon is shutting down, or its database does not answer.
    Unavailable,
    /// `422`: compiling the component took longer than the host allows.
    CompileTimeout,
    /// `503`: every compile slot stayed busy past the compile deadline (`Retry-After`).
    CompileBusy,
    /// `500`: a host-side failure; the details are in the server's log.
    Internal,
    /// `422`: a dataset upload has more bad rows than `max_bad_rows`; the message names the first.
    BadRows,
    /// `422`: the data cannot become a dataset as asked (missing values, no rows left, too many categories...).
    InvalidData,
    /// `415`: the upload's content type is not one muon reads.
    UnsupportedMediaType,
    /// `503`: the function's circuit breaker is open after failures in a row; it did not run (`Retry-After`).
    CircuitOpen,
    /// `499`: the client closed the connection while a function streamed its
    /// response, and the function was stopped. Only the ledger sees it: the
    /// client is gone.
    ClientClosed,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 32] = [
        Self::InvalidComponent,
        Self::InvalidModel,
        Self::UnknownImport,
        Self::BodyTooLarge,
        Self::BodyTimeout,
        Self::HeadersTooLarge,
        Self::BodiesBusy,
        Self::InvalidResponse,
        Self::ResponseTooLarge,
        Self::NotFound,
        Self::Unauthorized,
        Self::QuotaExceeded,
        Self::RateLimited,
        Self::LedgerUnavailable,
        Self::Conflict,
        Self::Forbidden,
        Self::MethodNotAllowed,
        Self::BadRequest,
        Self::FunctionError,
        Self::Timeout,
        Self::MemoryLimit,
        Self::Trap,
        Self::Overloaded,
        Self::Unavailable,
        Self::CompileTimeout,
        Self::CompileBusy,
        Self::Internal,
        Self::BadRows,
        Self::InvalidData,
        Self::UnsupportedMediaType,
        Self::CircuitOpen,
        Self::ClientClosed,
    ];

    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidComponent => "invalid_component",
            Self::InvalidModel => "invalid_model",
            Self::UnknownImport => "unknown_import",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BodiesBusy => "bodies_busy",
            Self::InvalidResponse => "invalid_response",
            Self::ResponseTooLarge => "response_too_large",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::QuotaExceeded => "quota_exceeded",
            Self::RateLimited => "rate_limited",
            Self::LedgerUnavailable => "ledger_unavailable",
            Self::Conflict => "conflict",
            Self::Forbidden => "forbidden",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadRequest => "bad_request",
            Self::FunctionError => "function_error",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::Trap => "trap",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::CompileTimeout => "compile_timeout",
            Self::CompileBusy => "compile_busy",
            Self::Internal => "internal",
            Self::BadRows => "bad_rows",
            Self::InvalidData => "invalid_data",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::CircuitOpen => "circuit_open",
            Self::ClientClosed => "client_closed",
        }
    }

    /// The code named `code` in JSON, if there is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`: the process is alive.
    pub status: HealthStatus,
}

/// What a health probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The process is alive.
    Ok,
}

/// `GET /readyz`: whether this node takes work, and what is degraded.
///
/// `ok` and `degraded` answer `200` (a degraded node still serves: route to
/// it, but look); `unavailable` answers `503` and carries `error` like every
/// error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// The verdict.
    pub status: ReadyStatus,
    /// Each check.
    pub checks: ReadyChecks,
    /// Why the node is `unavailable` (`code` is `unavailable`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// What `/readyz` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every check passed.
    Ok,
    /// The node takes work, but something is wrong (see the checks).
    Degraded,
    /// The node takes no work: shutting down, or its database does not answer.
    Unavailable,
}

/// The checks of `/readyz`. The first two decide `unavailable`, the others `degraded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyChecks {
    /// Not shutting down.
    pub accepting: Check,
    /// The database answers.
    pub database: Check,
    /// The usage ledger's writer keeps up (`count`: records not yet in the database).
    pub ledger: Check,
    /// Every model can be loaded (`count`: those that cannot).
    pub models: Check,
    /// Every alert sink takes deliveries (`count`: those failing).
    pub sinks: Check,
    /// No function's circuit breaker is open (`count`: those open).
    pub breakers: Check,
}

/// One check of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What is wrong, for a person; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many things it counts (waiting records, unloadable models, failing sinks, open breakers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Which ones, as `tenant/name`: only for an admin key, as the probe itself needs none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// The answer to a delete: the name (of a function or model) that is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// The name deleted.
    pub deleted: String,
}

/// The answer to `DELETE /v1/keys/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The id of the key revoked.
    pub revoked: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).ok(), Some(serde_json::Value::from(code.as_str())));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }
}
