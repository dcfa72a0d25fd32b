//! `/v1/functions`: deployed functions and their versions.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a component is, judged by what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionKind {
    /// Exports `muon:function/handle`; called at `/fn/{tenant}/{name}`.
    Handler,
    /// Exports `muon:function/stream-handle` and streams its response;
    /// called at `/fn/{tenant}/{name}`.
    StreamingHandler,
    /// Exports `wasi:http/incoming-handler`; called at `/fn/{tenant}/{name}`.
    Http,
    /// Exports `muon:function/preprocess`; called at `POST /v1/functions/{name}/invoke`.
    Preprocessor,
    /// Exports `muon:function/train`; called at `POST /v1/functions/{name}/invoke`.
    TrainingStep,
}

impl FunctionKind {
    /// The kind as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::StreamingHandler => "streaming-handler",
            Self::Http => "http",
            Self::Preprocessor => "preprocessor",
            Self::TrainingStep => "training-step",
        }
    }

    /// The kind named `name` in JSON, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Handler, Self::StreamingHandler, Self::Http, Self::Preprocessor, Self::TrainingStep]
            .into_iter()
            .find(|k| k.as_str() == name)
    }

    /// Whether it is called with JSON at `POST /v1/functions/{name}/invoke`
    /// rather than over HTTP at `/fn/{tenant}/{name}`.
    pub fn is_typed(self) -> bool {
        matches!(self, Self::Preprocessor | Self::TrainingStep)
    }
}

/// Limits a function version runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionLimits {
    /// Guest memory limit, in MiB.
    pub memory_mb: u64,
    /// Deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Calls of this function running at once; more wait in a short queue.
    pub max_concurrency: u64,
}

/// One version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionVersion {
    /// The tenant that owns the function.
    pub tenant: String,
    /// The function's name.
    pub name: String,
    /// Version number, from 1, one more per deploy.
    pub version: i64,
    /// SHA-256 of the component, in hex.
    pub digest: String,
    /// What the component exports, which decides how it is called.
    pub kind: FunctionKind,
    /// Size of the component, in bytes.
    pub size_bytes: i64,
    /// Callable without an API key (limited by the anonymous budget).
    pub public: bool,
    /// Hosts the function may call over outbound HTTP.
    pub allowed_hosts: Vec<String>,
    /// Models the function may load by name; `null`: every model of its tenant.
    pub models: Option<Vec<String>>,
    /// When this version was deployed, in Unix milliseconds.
    pub created_at_ms: i64,
    /// The limits this version runs under.
    pub limits: FunctionLimits,
    /// Its circuit breaker; `null`: none.
    #[serde(default)]
    pub breaker: Option<BreakerOptions>,
}

/// A function's circuit breaker: after `failures` host-side failures in a
/// row (`trap`, `timeout`, `memory_limit`, `invalid_response`,
/// `response_too_large`, `internal`), calls are answered `503 circuit_open`
/// for `cooldown_s`, then one call at a time is let through until one succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BreakerOptions {
    /// Host-side failures in a row that open it.
    pub failures: u32,
    /// How long it stays open, in seconds.
    pub cooldown_s: u64,
}

/// `GET /v1/functions/{name}`: the active version and every kept version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionDetail {
    /// The active version.
    #[serde(flatten)]
    pub active: FunctionVersion,
    /// Every kept version, oldest first.
    pub versions: Vec<FunctionVersion>,
    /// The guarded rollout in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,
}

/// `GET /v1/functions`: the active version of each of the tenant's functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    /// One entry per function.
    pub functions: Vec<FunctionVersion>,
}

/// Query parameters of `PUT /v1/functions/{name}`; anything unset takes the
/// server's default (within the tenant's quotas).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeployQuery {
    /// Guest memory limit, in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Deadline of one call, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Calls running at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    /// Callable without an API key: `true` or `false` (also `1`, `0`) [default: false].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// Hosts the function may call over outbound HTTP, comma-separated [default: none].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<String>,
    /// Models the function may load by name, comma-separated; `*`: every model of the tenant [default: `*`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<String>,
    /// How the new version takes over: `watch` (every call at once, watched for `watch_s` against the version
    /// before it and rolled back on a clear regression), `canary` (`canary_percent` of the calls for
    /// `canary_for_s`, then promoted unless it regressed), or `direct` (unwatched) [default: `watch`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The canary's share of the calls, 1 to 99 [default: 10].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<u64>,
    /// Seconds the canary runs before it is promoted [default: 120].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_for_s: Option<u64>,
    /// Seconds a watched deploy is watched; 0 deploys unwatched [default: the server's `monitor.watch_s`, 120].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_s: Option<u64>,
    /// Opens a circuit breaker after this many host-side failures in a row (1 to 10000) [default: no breaker].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u64>,
    /// How long an open breaker refuses calls, in seconds (1 to 86400; needs `breaker_failures`) [default: 30].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown_s: Option<u64>,
}

/// A guarded rollout in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutState {
    /// `canary` or `watch`.
    pub mode: String,
    /// The version calls go back to on a regression.
    pub stable_version: i64,
    /// The version being judged.
    pub candidate_version: i64,
    /// Its share of the calls, in percent.
    pub percent: i64,
    /// When it started, in Unix milliseconds.
    pub started_at_ms: i64,
    /// When it is promoted if nothing regresses, in Unix milliseconds.
    pub until_ms: i64,
}
