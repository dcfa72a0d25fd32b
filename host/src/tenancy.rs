//! Tenants' quotas, rate limits, budgets and price plans.
//!
//! Quotas come from three layers, field by field: the admin API
//! (`PUT /v1/tenants/{tenant}/quotas`) over the tenant's `[tenants.NAME]`
//! config over the default `[quotas]`. Anything unset is unlimited, except
//! `max_keys` ([`DEFAULT_MAX_KEYS`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::civil_from_days;
use crate::db::{Db, Footprint};
use crate::ledger::pricing::Plan;

/// Limits of one tenant, `None` being unlimited: the API's type, so that
/// the file, the database and the API read and write one shape.
pub use crate::api::Quotas;

/// Management API requests per second when no layer sets `api_requests_per_second`.
pub const DEFAULT_API_REQUESTS_PER_SECOND: u32 = 100;

/// Live keys a tenant may hold when no layer sets `max_keys`.
pub const DEFAULT_MAX_KEYS: u32 = 100;

impl Quotas {
    /// Each field of `self`, or of `base` where `self` has none.
    #[must_use]
    pub fn or(self, base: Quotas) -> Quotas {
        Quotas {
            max_concurrent_requests: self.max_concurrent_requests.or(base.max_concurrent_requests),
            requests_per_second: self.requests_per_second.or(base.requests_per_second),
            max_memory_mb: self.max_memory_mb.or(base.max_memory_mb),
            max_timeout_ms: self.max_timeout_ms.or(base.max_timeout_ms),
            max_functions: self.max_functions.or(base.max_functions),
            max_storage_bytes: self.max_storage_bytes.or(base.max_storage_bytes),
            monthly_budget_micros: self.monthly_budget_micros.or(base.monthly_budget_micros),
            max_keys: self.max_keys.or(base.max_keys),
            api_requests_per_second: self.api_requests_per_second.or(base.api_requests_per_second),
            max_concurrent_jobs: self.max_concurrent_jobs.or(base.max_concurrent_jobs),
            max_trial_parallelism: self.max_trial_parallelism.or(base.max_trial_parallelism),
        }
    }
}

/// A tenant's section in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    /// Name of a plan in `[plans]`; `default` when unset.
    pub plan: Option<String>,
    /// Overrides `[quotas]` for this tenant, limit by limit.
    pub quotas: Quotas,
}

/// Billing and quota configuration.
#[derive(Debug, Clone, Default)]
pub struct TenancyConfig {
    /// The limits of every tenant that sets none of its own (`[quotas]`).
    pub default_quotas: Quotas,
    /// Prices by plan name (`[plans.NAME]`).
    pub plans: BTreeMap<String, Plan>,
    /// Plan and quotas per tenant (`[tenants.NAME]`).
    pub tenants: BTreeMap<String, TenantSettings>,
}

/// Live state of one tenant.
struct TenantState {
    quotas: Quotas,
    plan: Plan,
    concurrency: Option<Arc<Semaphore>>,
    bucket: Option<Mutex<TokenBucket>>,
    /// The management API's rate limit.
    api_bucket: Mutex<TokenBucket>,
    /// Spend this month as known to this node, and the month it is for.
    month_cost: AtomicI64,
    month_start_ms: AtomicI64,
}

/// A tenant's admission; releases its concurrency slot when dropped.
pub struct TenantPermit {
    _slot: Option<OwnedSemaphorePermit>,
}

/// Quotas, rate limits and plans of all tenants.
pub struct Tenancy {
    db: Db,
    config: TenancyConfig,
    live: DashMap<String, Arc<TenantState>>,
}

impl Tenancy {
    /// Tenancy over `db` with the configured defaults.
    pub fn new(db: Db, config: TenancyConfig) -> Self {
        Self { db, config, live: DashMap::new() }
    }

    /// Admits one management API request of `tenant`'s keys, or answers
    /// `429`: a tenant flooding deploys or uploads would take the host's CPU
    /// and database from every other tenant.
    pub async fn admit_api(&self, tenant: &str) -> Result<(), TenancyError> {
        let state = self.state(tenant).await?;
        let mut bucket = state.api_bucket.lock().map_err(|_| anyhow::anyhow!("rate limiter poisoned"))?;
        if bucket.take() {
            return Ok(());
        }
        Err(TenancyError::RateLimited { limit: state.quotas.api_requests_per_second.unwrap_or(0), retry_after_s: 1 })
    }

    /// Admits one request of `tenant` or says which limit it hit.
    pub async fn admit(&self, tenant: &str) -> Result<TenantPermit, TenancyError> {
        let state = self.state(tenant).await?;
        if let Some(bucket) = &state.bucket {
            let mut bucket = bucket.lock().map_err(|_| anyhow::anyhow!("rate limiter poisoned"))?;
            if !bucket.take() {
                let limit = state.quotas.requests_per_second.unwrap_or(0);
                return Err(TenancyError::RateLimited { limit, retry_after_s: 1 });
            }
        }
        self.check_budget(&state).await?;
        let slot = match &state.concurrency {
            Some(semaphore) => Some(Arc::clone(semaphore).try_acquire_owned().map_err(|_| {
                TenancyError::from(QuotaExceeded {
                    message: format!(
                        "the tenant already has {} requests running, its limit",
                        state.quotas.max_concurrent_requests.unwrap_or(0)
                    ),
                    retry_after_s: 1,
                })
            })?),
            None => None,
        };
        Ok(TenantPermit { _slot: slot })
    }

    /// Admits one anonymous call of `tenant`'s public function through the
    /// function's own `gate`. The tenant's rate and concurrency limits are
    /// left to its key-holding callers; the call is still billed to the
    /// tenant, so a spent monthly budget refuses it too.
    pub async fn admit_anonymous(&self, tenant: &str, gate: &AnonymousGate) -> Result<TenantPermit, TenancyError> {
        let slot = gate.admit()?;
        let state = self.state(tenant).await?;
        self.check_budget(&state).await?;
        Ok(TenantPermit { _slot: Some(slot) })
    }

    /// Whether `tenant` may start a job running `parallel` trials at once
    /// while it has `active_jobs` queued or running.
    pub async fn check_job(&self, tenant: &str, active_jobs: u64, parallel: u32) -> Result<(), TenancyError> {
        let state = self.state(tenant).await?;
        if let Some(limit) = state.quotas.max_concurrent_jobs
            && active_jobs >= u64::from(limit)
        {
            return Err(TenancyError::from(QuotaExceeded {
                message: format!("the tenant already has {active_jobs} jobs queued or running, its limit is {limit}"),
                retry_after_s: 10,
            }));
        }
        if let Some(limit) = state.quotas.max_trial_parallelism
            && parallel > limit
        {
            return Err(TenancyError::from(QuotaExceeded {
                message: format!("`search.parallel` is {parallel}; the tenant may run at most {limit} trials at once"),
                retry_after_s: 0,
            }));
        }
        self.check_budget(&state).await
    }

    /// Whether `tenant`'s monthly budget still allows work.
    pub async fn check_spend(&self, tenant: &str) -> Result<(), TenancyError> {
        let state = self.state(tenant).await?;
        self.check_budget(&state).await
    }

    async fn check_budget(&self, state: &TenantState) -> Result<(), TenancyError> {
        if let Some(budget) = state.quotas.monthly_budget_micros {
            self.roll_month(state).await?;
            if state.month_cost.load(Ordering::Acquire) >= budget {
                return Err(TenancyError::from(QuotaExceeded {
                    message: format!("the tenant's monthly budget of {budget} micro-units is spent"),
                    retry_after_s: seconds_to_next_month(),
                }));
            }
        }
        Ok(())
    }

    /// Checks a deploy against the tenant's limits that do not depend on
    /// what is stored, and refuses early what cannot fit; returns the storage
    /// limits the registry checks again in the transaction that writes.
    pub async fn check_deploy(
        &self,
        tenant: &str,
        memory_mb: u32,
        timeout_ms: u64,
        new_function: bool,
        size: u64,
    ) -> Result<StorageQuota, TenancyError> {
        let quotas = self.state(tenant).await?.quotas;
        if let Some(max) = quotas.max_memory_mb.filter(|&max| memory_mb > max) {
            return Err(exceeded_api(format!("memory_mb={memory_mb} is over the tenant's limit of {max}")));
        }
        if let Some(max) = quotas.max_timeout_ms.filter(|&max| timeout_ms > max) {
            return Err(exceeded_api(format!("timeout_ms={timeout_ms} is over the tenant's limit of {max}")));
        }
        let quota = StorageQuota { max_functions: quotas.max_functions, max_storage_bytes: quotas.max_storage_bytes };
        if let Some(max) = quota.max_storage_bytes.filter(|&max| size > max) {
            return Err(exceeded_api(format!(
                "the component's {size} bytes alone pass the tenant's storage limit of {max} bytes"
            )));
        }
        if new_function && quota.max_functions.is_some() {
            // Compiling is the expensive part: refuse before it what is sure to be refused after.
            let now = self.db.tenant_footprint(tenant).await?;
            quota.check(now, Footprint { functions: now.functions + 1, ..now })?;
        }
        Ok(quota)
    }

    /// Checks an upload (a model, a dataset) of `size` bytes against the
    /// tenant's storage limit, refusing early what cannot fit; returns the
    /// limits the store checks again in the transaction that writes.
    pub async fn check_upload(&self, tenant: &str, size: u64) -> Result<StorageQuota, TenancyError> {
        let quotas = self.state(tenant).await?.quotas;
        let quota = StorageQuota { max_functions: quotas.max_functions, max_storage_bytes: quotas.max_storage_bytes };
        if let Some(max) = quotas.max_storage_bytes {
            let stored = self.db.tenant_footprint(tenant).await?.bytes;
            let total = u64::try_from(stored).unwrap_or(0) + size;
            if total > max {
                return Err(exceeded_api(format!(
                    "storing {total} bytes (functions, models and datasets) would pass the tenant's limit of {max}"
                )));
            }
        }
        Ok(quota)
    }

    /// Adds a written record's cost to the tenant's spend this month.
    pub async fn charge(&self, tenant: &str, cost_micros: i64) {
        if let Ok(state) = self.state(tenant).await {
            state.month_cost.fetch_add(cost_micros, Ordering::AcqRel);
        }
    }

    /// The price plan of a tenant.
    pub async fn plan(&self, tenant: &str) -> Result<Plan, TenancyError> {
        Ok(self.state(tenant).await?.plan)
    }

    /// Live keys the tenant may hold.
    pub async fn max_keys(&self, tenant: &str) -> Result<u32, TenancyError> {
        Ok(self.state(tenant).await?.quotas.max_keys.unwrap_or(DEFAULT_MAX_KEYS))
    }

    /// The effective quotas of a tenant.
    pub async fn quotas(&self, tenant: &str) -> Result<Quotas, TenancyError> {
        Ok(self.state(tenant).await?.quotas)
    }

    /// Sets quotas through the admin API; they apply at once on this node.
    pub async fn set_quotas(&self, tenant: &str, quotas: Quotas) -> Result<Quotas, TenancyError> {
        let json = serde_json::to_string(&quotas).map_err(anyhow::Error::from)?;
        if !self.db.set_tenant_quotas(tenant, &json).await? {
            return Err(TenancyError::UnknownTenant(tenant.to_owned()));
        }
        self.live.remove(tenant);
        self.quotas(tenant).await
    }

    async fn state(&self, tenant: &str) -> Result<Arc<TenantState>, TenancyError> {
        if let Some(state) = self.live.get(tenant) {
            return Ok(Arc::clone(state.value()));
        }
        let stored = self
            .db
            .tenant_quotas(tenant)
            .await?
            .map(|json| serde_json::from_str::<Quotas>(&json).unwrap_or_default())
            .unwrap_or_default();
        let settings = self.config.tenants.get(tenant).cloned().unwrap_or_default();
        let mut quotas = stored.or(settings.quotas).or(self.config.default_quotas);
        quotas.max_keys = quotas.max_keys.or(Some(DEFAULT_MAX_KEYS));
        let api_rate = *quotas.api_requests_per_second.get_or_insert(DEFAULT_API_REQUESTS_PER_SECOND);
        let plan_name = settings.plan.as_deref().unwrap_or("default");
        let plan = self.config.plans.get(plan_name).copied().unwrap_or_default();
        let month_start = month_start_ms(crate::clock::now_ms());
        let spent = self.db.cost_since(tenant, month_start).await?;
        let state = Arc::new(TenantState {
            quotas,
            plan,
            concurrency: quotas.max_concurrent_requests.map(|n| Arc::new(Semaphore::new(n as usize))),
            bucket: quotas.requests_per_second.map(|rate| Mutex::new(TokenBucket::new(rate))),
            api_bucket: Mutex::new(TokenBucket::new(api_rate)),
            month_cost: AtomicI64::new(spent),
            month_start_ms: AtomicI64::new(month_start),
        });
        Ok(Arc::clone(self.live.entry(tenant.to_owned()).or_insert(state).value()))
    }

    async fn roll_month(&self, state: &TenantState) -> Result<(), TenancyError> {
        let start = month_start_ms(crate::clock::now_ms());
        if state.month_start_ms.swap(start, Ordering::AcqRel) != start {
            state.month_cost.store(0, Ordering::Release);
        }
        Ok(())
    }
}

/// The limits on what a tenant stores, checked in the same transaction that
/// writes a deploy, so that parallel deploys cannot all pass one check.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageQuota {
    /// Functions the tenant may have; `None`: no limit.
    pub max_functions: Option<u32>,
    /// Bytes the tenant may store; `None`: no limit.
    pub max_storage_bytes: Option<u64>,
}

impl StorageQuota {
    /// Whether a change from `before` to `after` is allowed. A change that
    /// adds no function, or no bytes, passes even over a quota (lowered since).
    pub fn check(&self, before: Footprint, after: Footprint) -> Result<(), QuotaExceeded> {
        let added_function = after.functions > before.functions;
        if let Some(max) = self.max_functions.filter(|&max| added_function && after.functions > i64::from(max)) {
            return Err(exceeded(format!("the tenant already has {} functions, its limit is {max}", before.functions)));
        }
        let total = u64::try_from(after.bytes).unwrap_or(0);
        if let Some(max) = self.max_storage_bytes.filter(|&max| after.bytes > before.bytes && total > max) {
            return Err(exceeded(format!(
                "storing {total} bytes (functions, models and datasets) would pass the tenant's limit of {max}"
            )));
        }
        Ok(())
    }
}

fn exceeded_api(message: String) -> TenancyError {
    exceeded(message).into()
}

fn exceeded(message: String) -> QuotaExceeded {
    QuotaExceeded { message, retry_after_s: 3600 }
}

/// A change refused by one of the tenant's storage quotas.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QuotaExceeded {
    /// Which quota, and by how much.
    pub message: String,
    /// When a retry may pass.
    pub retry_after_s: u32,
}

/// A tenant's request or change refused, or its state unreadable.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The tenant's request rate is over its limit.
    #[error("the tenant's request rate is over its limit of {limit} per second")]
    RateLimited {
        /// The limit, per second.
        limit: u32,
        /// When to retry.
        retry_after_s: u32,
    },
    /// A quota (concurrency, budget, storage, limits) is used up.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// No such tenant.
    #[error("tenant `{0}` was not found")]
    UnknownTenant(String),
    /// The database could not be read or written.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Host-wide limits on anonymous callers of each public function.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousLimits {
    /// Anonymous calls per second of one function; `None` is no rate limit of their own.
    pub requests_per_second: Option<u32>,
    /// Anonymous calls of one function running at once; `None` is half the function's `max_concurrency`.
    pub max_concurrency: Option<u32>,
}

/// The budget of one public function's anonymous callers: a concurrency
/// limit and a rate limit of their own, apart from the tenant's quotas, so
/// strangers can neither use up the owner's limits nor take every instance.
#[derive(Debug)]
pub struct AnonymousGate {
    slots: Arc<Semaphore>,
    max_concurrency: u32,
    bucket: Option<Mutex<TokenBucket>>,
}

impl AnonymousGate {
    /// The gate of a function that allows `function_concurrency` instances.
    pub fn new(limits: AnonymousLimits, function_concurrency: u32) -> Self {
        let max_concurrency =
            limits.max_concurrency.unwrap_or(function_concurrency / 2).clamp(1, function_concurrency.max(1));
        Self {
            slots: Arc::new(Semaphore::new(max_concurrency as usize)),
            max_concurrency,
            bucket: limits.requests_per_second.map(|rate| Mutex::new(TokenBucket::new(rate))),
        }
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, TenancyError> {
        let refuse = |what: String| {
            TenancyError::from(QuotaExceeded {
                message: format!(
                    "anonymous callers of this function are at their limit of {what}; retry later or call with an API key of its tenant"
                ),
                retry_after_s: 1,
            })
        };
        if let Some(bucket) = &self.bucket {
            let mut bucket = bucket.lock().map_err(|_| anyhow::anyhow!("rate limiter poisoned"))?;
            if !bucket.take() {
                return Err(refuse(format!("{} requests per second", bucket.rate)));
            }
        }
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| refuse(format!("{} requests running at once", self.max_concurrency)))
    }
}

/// A token bucket refilled continuously at `rate` tokens per second.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        Self { rate: f64::from(rate), tokens: f64::from(rate), refilled: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.rate).min(self.rate.max(1.0));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Start of the current UTC month, in Unix milliseconds.
fn month_start_ms(now_ms: i64) -> i64 {
    let days = now_ms.div_euclid(86_400_000);
    let (year, month, _) = civil_from_days(days);
    days_from_civil(year, month, 1) * 86_400_000
}

fn seconds_to_next_month() -> u32 {
    let now = crate::clock::now_ms();
    let (year, month, _) = civil_from_days(now.div_euclid(86_400_000));
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let next = days_from_civil(next_year, next_month, 1) * 86_400_000;
    u32::try_from((next - now) / 1000).unwrap_or(u32::MAX).max(1)
}

/// Days since 1970-01-01 of a date (proleptic Gregorian).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_gate_defaults_to_half_the_function_and_limits_its_rate() {
        let gate = AnonymousGate::new(AnonymousLimits::default(), 8);
        let held: Vec<_> = (0..4).map(|_| gate.admit()).collect();
        assert!(held.iter().all(Result::is_ok));
        assert!(matches!(gate.admit(), Err(TenancyError::Quota(QuotaExceeded { .. }))));
        let limited =
            AnonymousGate::new(AnonymousLimits { requests_per_second: Some(3), max_concurrency: Some(100) }, 64);
        let admitted = (0..10).filter(|_| limited.admit().is_ok()).count();
        assert_eq!((admitted, limited.max_concurrency), (3, 64));
    }

    #[test]
    fn month_start_is_the_first_at_midnight_utc() {
        // 2026-11-27T14:00:00Z -> 2026-11-01T00:00:00Z
        assert_eq!(month_start_ms(1_795_788_000_000), 1_793_491_200_000);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let mut bucket = TokenBucket::new(5);
        let allowed = (0..20).filter(|_| bucket.take()).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn quotas_layer_field_by_field() {
        let api = Quotas { max_functions: Some(3), ..Quotas::default() };
        let config = Quotas { max_functions: Some(10), max_memory_mb: Some(256), ..Quotas::default() };
        let merged = api.or(config);
        assert_eq!(merged.max_functions, Some(3));
        assert_eq!(merged.max_memory_mb, Some(256));
        assert_eq!(merged.requests_per_second, None);
    }
}
