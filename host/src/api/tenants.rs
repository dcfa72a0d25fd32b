//! `/v1/tenants` and `/v1/keys`: tenants, their API keys and quotas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Limits of one tenant; `null` (or absent) is unlimited unless said otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Requests of the tenant running at once.
    pub max_concurrent_requests: Option<u32>,
    /// Sustained requests per second (token bucket; bursts up to one second's worth).
    pub requests_per_second: Option<u32>,
    /// Largest `memory_mb` a deploy may ask for.
    pub max_memory_mb: Option<u32>,
    /// Largest `timeout_ms` a deploy may ask for.
    pub max_timeout_ms: Option<u64>,
    /// Functions the tenant may have.
    pub max_functions: Option<u32>,
    /// Bytes stored: each distinct component the tenant's kept versions hold, once, and its models.
    pub max_storage_bytes: Option<u64>,
    /// Spend per calendar month (UTC), in micro-units.
    pub monthly_budget_micros: Option<i64>,
    /// Live (not revoked) API keys the tenant may hold [default: 100; never unlimited].
    pub max_keys: Option<u32>,
    /// Management API (`/v1`, function calls excluded) requests per second of the tenant's
    /// keys, bursts up to one second's worth [default: 100; never unlimited]. Admin keys are not limited.
    pub api_requests_per_second: Option<u32>,
    /// Training jobs queued or running at once.
    pub max_concurrent_jobs: Option<u32>,
    /// Trials one job may run at once (its `search.parallel`).
    pub max_trial_parallelism: Option<u32>,
}

/// The body of `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The tenant's name: lowercase letters, digits and `-`.
    pub name: String,
    /// Quotas set through the API, over the configured ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Quotas>,
}

/// The body of `POST /v1/tenants/{tenant}/keys`; the body itself is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Issue an admin key (admin callers only) [default: false].
    #[serde(default)]
    pub admin: bool,
}

/// A freshly issued API key. The secret is shown this once; muon keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    /// The key's id, for `DELETE /v1/keys/{id}`.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: String,
    /// The secret: send it as `Authorization: Bearer <key>`.
    pub key: String,
}

/// The answer to `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    /// The new tenant's name.
    pub tenant: String,
    /// Its first key.
    pub key: IssuedKey,
}

/// A tenant and its effective quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// The tenant's name.
    pub name: String,
    /// When it was created, in Unix milliseconds.
    pub created_at_ms: i64,
    /// Its effective quotas: the API's over the configured ones, field by field.
    pub quotas: Quotas,
}

/// `GET /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// Every tenant.
    pub tenants: Vec<Tenant>,
}

/// `GET` and `PUT /v1/tenants/{tenant}/quotas`: a tenant's effective quotas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantQuotas {
    /// The tenant's name.
    pub tenant: String,
    /// Its effective quotas: the API's over the configured ones, field by field.
    pub quotas: Quotas,
}
