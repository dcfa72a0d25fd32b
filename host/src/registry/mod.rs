//! Deployed functions: the catalog in the database and the live versions in
//! memory. A deploy or rollback swaps the active version of a function in one
//! step; requests already running keep the `Arc<Version>` they started with.

mod admission;
mod breaker;
mod compile;
mod error;
mod rollout;
mod storage;

use std::sync::Arc;

use anyhow::Context;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

pub use admission::{Admission, Overloaded};
pub use breaker::{Breaker, BreakerSettings, CircuitOpen, Ticket, Transition, Verdict};
pub use error::RegistryError;
pub use rollout::{Decision, Rollout, RolloutPlan};

use crate::db::{Db, NewAudit, ObjectKind, RolloutRow, VersionRecord};
use crate::engine::{EntryPoint, Runtime};
use crate::names::{FunctionName, check_model_name};
use crate::nn::ModelAccess;
use crate::nn::wasi::NnScope;
use crate::stats::{Series, SeriesKey, SeriesKind, StatsStore};
use crate::telemetry::FunctionMetrics;
use crate::tenancy::{AnonymousLimits, StorageQuota};
use compile::Compiler;
use storage::LocalStore;

/// Limits a function runs under.
#[derive(Debug, Clone, Copy)]
pub struct FunctionLimits {
    /// Linear memory an instance may grow to, in MiB.
    pub memory_mb: u32,
    /// The deadline of a call, in milliseconds.
    pub timeout_ms: u64,
    /// Instances running at once.
    pub max_concurrency: u32,
}

/// What a deploy asks for beyond the component itself.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Memory limit, in MiB; the host default when `None`.
    pub memory_mb: Option<u32>,
    /// Deadline, in milliseconds; the host default when `None`.
    pub timeout_ms: Option<u64>,
    /// Instances at once; the host default when `None`.
    pub max_concurrency: Option<u32>,
    /// Whether anyone may call it without a key (under the anonymous budget).
    pub public: bool,
    /// Hosts its outbound requests may reach.
    pub allowed_hosts: Vec<String>,
    /// Models the function may load by name; `None`: every model of its tenant.
    pub models: Option<Vec<String>>,
    /// Whether the new version is watched or takes a share of the calls at first.
    pub rollout: RolloutPlan,
    /// Its circuit breaker; `None`: none (the default).
    pub breaker: Option<BreakerSettings>,
}

/// One live version of a function.
pub struct Version {
    /// The version as the catalog stores it.
    pub record: VersionRecord,
    /// The limits its calls run under.
    pub limits: FunctionLimits,
    /// Hosts its outbound requests may reach.
    pub allowed_hosts: Arc<[String]>,
    /// The models its instances may load.
    pub nn_scope: Arc<NnScope>,
    /// The pre-linked component to instantiate.
    pub entry: EntryPoint,
    /// Its concurrency slots and queue, shared across versions with the same limit.
    pub admission: Arc<Admission>,
    /// Its circuit breaker, if it has one: shared across versions with the same settings.
    pub breaker: Option<Arc<Breaker>>,
    /// `tenant/name`, the function's label in metrics and logs.
    pub label: String,
    /// Its metric series.
    pub metrics: FunctionMetrics,
    /// Its live statistics.
    pub stats: Arc<Series>,
}

/// What the registry needs from the configuration.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Where components are stored once each, by digest.
    pub components_dir: std::path::PathBuf,
    /// Per-function defaults and caps.
    pub limits: LimitDefaults,
    /// Requests that may wait for a busy function.
    pub queue_depth: u32,
    /// How long a request may wait for a busy function.
    pub queue_timeout: std::time::Duration,
    /// Host-wide defaults of the budget anonymous callers share per public function.
    pub anonymous: AnonymousLimits,
    /// Versions kept per function, the active one included.
    pub max_versions_kept: usize,
    /// Components compiled at once.
    pub compile_slots: usize,
    /// How long one compile may take.
    pub compile_timeout: std::time::Duration,
}

/// Per-function limits: the defaults a deploy gets and the caps it may not pass.
#[derive(Debug, Clone, Copy)]
pub struct LimitDefaults {
    /// Memory of a function that names none, in MiB.
    pub default_memory_mb: u32,
    /// Largest memory a deploy may ask for, in MiB.
    pub max_memory_mb: u32,
    /// Deadline of a function that names none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Longest deadline a deploy may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Concurrent instances of a function that names no limit.
    pub default_max_concurrency: u32,
    /// Largest `max_concurrency` a deploy may ask for.
    pub max_concurrency_cap: u32,
}

/// The function registry.
pub struct Registry {
    db: Db,
    runtime: Arc<Runtime>,
    config: RegistrySettings,
    files: LocalStore,
    live: DashMap<String, Arc<Version>>,
    /// Guarded rollouts in progress, by `tenant/name`.
    rollouts: DashMap<String, Arc<Rollout>>,
    stats: Arc<StatsStore>,
    /// Serialises this node's catalog changes, so two deploys of a name
    /// cannot interleave (the database transaction serialises nodes).
    changes: tokio::sync::Mutex<()>,
    compiler: Compiler,
}

fn key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

impl Registry {
    /// Loads every function's active version from the catalog.
    pub async fn load(
        db: Db,
        runtime: Arc<Runtime>,
        config: RegistrySettings,
        stats: Arc<StatsStore>,
    ) -> anyhow::Result<Self> {
        let components_dir = config.components_dir.clone();
        std::fs::create_dir_all(&components_dir)
            .with_context(|| format!("cannot create {}", components_dir.display()))?;
        let compiler = Compiler::new(Arc::clone(&runtime), config.compile_slots, config.compile_timeout);
        let registry = Self {
            files: LocalStore::new(components_dir, Arc::clone(&runtime)),
            db,
            runtime,
            config,
            live: DashMap::new(),
            rollouts: DashMap::new(),
            stats,
            changes: tokio::sync::Mutex::new(()),
            compiler,
        };
        registry.sweep().await?;
        for record in registry.db.active_versions().await? {
            let label = key(&record.tenant, &record.name);
            match registry.materialize(record).await {
                Ok(version) => {
                    registry.live.insert(label, Arc::new(version));
                }
                Err(err) => tracing::error!(function = %label, error = %err, "cannot load function"),
            }
        }
        registry.sync_rollouts().await?;
        tracing::info!(functions = registry.live.len(), rollouts = registry.rollouts.len(), "registry loaded");
        Ok(registry)
    }

    /// The active version of a function.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<Version>> {
        self.live.get(&key(tenant, name)).map(|v| Arc::clone(v.value()))
    }

    /// The version to run the next call of a function on: the active one,
    /// or during a canary rollout, the stable one for the calls the
    /// candidate does not take.
    pub fn route(&self, tenant: &str, name: &str) -> Option<Arc<Version>> {
        let label = key(tenant, name);
        let active = Arc::clone(self.live.get(&label)?.value());
        match self.rollouts.get(&label) {
            Some(rollout) => Some(rollout.pick(active)),
            None => Some(active),
        }
    }

    /// The rollout of a function in progress, if any.
    pub fn rollout(&self, tenant: &str, name: &str) -> Option<Arc<Rollout>> {
        self.rollouts.get(&key(tenant, name)).map(|r| Arc::clone(r.value()))
    }

    /// Every rollout in progress on this node.
    pub fn rollouts(&self) -> Vec<Arc<Rollout>> {
        self.rollouts.iter().map(|r| Arc::clone(r.value())).collect()
    }

    /// Active versions of a tenant's functions, sorted by name.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Version>> {
        let mut versions: Vec<_> = self
            .live
            .iter()
            .filter(|entry| entry.value().record.tenant == tenant)
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        versions.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        versions
    }

    /// All stored versions of a function.
    pub async fn history(&self, tenant: &str, name: &FunctionName) -> Result<Vec<VersionRecord>, RegistryError> {
        Ok(self.db.versions(tenant, name.as_str()).await?)
    }

    /// Compiles (or finds cached), checks and activates a new version; the
    /// tenant's `quota` is checked in the transaction that stores it. Keeps
    /// the newest `max_versions_kept` versions and frees what the others held.
    pub async fn deploy(
        &self,
        tenant: &str,
        name: &FunctionName,
        bytes: bytes::Bytes,
        options: DeployOptions,
        quota: StorageQuota,
    ) -> Result<Arc<Version>, RegistryError> {
        let digest = hex::encode(Sha256::digest(&bytes));
        let pin = self.files.pin(&digest);
        let deployed = self.deploy_pinned(tenant, name, &digest, bytes, options, quota).await;
        drop(pin);
        if deployed.is_err() {
            // A refused or failed deploy leaves no file and no artifact behind.
            let _guard = self.changes.lock().await;
            if let Err(err) = self.files.forget_if_unused(&self.db, &digest).await {
                tracing::warn!(
                    error = format!("{err:#}"),
                    digest,
                    "cannot clean up after a failed deploy; the next start will"
                );
            }
        }
        deployed
    }

    async fn deploy_pinned(
        &self,
        tenant: &str,
        name: &FunctionName,
        digest: &str,
        bytes: bytes::Bytes,
        options: DeployOptions,
        quota: StorageQuota,
    ) -> Result<Arc<Version>, RegistryError> {
        let limits = self.limits_for(&options)?;
        let component = self.compiler.compile(tenant, digest, bytes.clone()).await?;
        let entry = self.runtime.prepare(&component)?;
        crate::files::store_once(&self.files.component_path(digest), &bytes)
            .await
            .context("cannot store the component")?;

        let _guard = self.changes.lock().await;
        let label = key(tenant, name.as_str());
        // A deploy during a rollout is judged against the same stable version.
        let stable = match self.rollouts.get(&label) {
            Some(rollout) => Some(Arc::clone(&rollout.stable)),
            None => self.get(tenant, name.as_str()),
        };
        let mut record = VersionRecord {
            tenant: tenant.to_owned(),
            name: name.as_str().to_owned(),
            version: 0,
            digest: digest.to_owned(),
            kind: entry.kind().as_str().to_owned(),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            memory_mb: i64::from(limits.memory_mb),
            timeout_ms: i64::try_from(limits.timeout_ms).unwrap_or(i64::MAX),
            max_concurrency: i64::from(limits.max_concurrency),
            public: options.public,
            allowed_hosts: options.allowed_hosts.join(","),
            models: options.models.as_ref().map(|names| names.join(",")),
            breaker_failures: options.breaker.map_or(0, |b| i64::from(b.failures)),
            breaker_cooldown_s: options.breaker.map_or(0, |b| i64::try_from(b.cooldown_s()).unwrap_or(i64::MAX)),
            created_at_ms: crate::clock::now_ms(),
        };
        let mut change = self.db.change(tenant).await?;
        let before = change.footprint(tenant).await?;
        change.insert_version(&mut record, &bytes).await?;
        let guarded = options.rollout.share_and_duration().zip(stable);
        let rollout = match guarded {
            Some(((percent, duration), stable)) => {
                let now_ms = crate::clock::now_ms();
                let row = RolloutRow {
                    tenant: tenant.to_owned(),
                    name: name.as_str().to_owned(),
                    stable_version: stable.record.version,
                    candidate_version: record.version,
                    percent: i64::from(percent),
                    started_at_ms: now_ms,
                    until_ms: now_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
                };
                change.start_rollout(&row).await?;
                Some(Arc::new(Rollout::new(row, stable)))
            }
            None => {
                change.end_rollout(tenant, name.as_str()).await?;
                None
            }
        };
        let pruned = change.prune_function(tenant, name.as_str(), self.config.max_versions_kept).await?;
        quota.check(before, change.footprint(tenant).await?)?;
        let released = change.release(pruned).await?;
        change.commit().await?;
        self.files.remove(&released);
        let version = Arc::new(self.build_version(record, limits, entry));
        self.live.insert(label.clone(), Arc::clone(&version));
        let message = match &rollout {
            Some(rollout) if rollout.is_watch() => format!(
                "version {} deployed, watched against version {} until it is promoted",
                version.record.version, rollout.row.stable_version
            ),
            Some(rollout) => format!(
                "version {} deployed as a canary taking {}% of the calls; version {} takes the rest",
                version.record.version, rollout.row.percent, rollout.row.stable_version
            ),
            None => format!("version {} deployed", version.record.version),
        };
        match rollout {
            Some(rollout) => self.rollouts.insert(label, rollout),
            None => self.rollouts.remove(&label).map(|(_, r)| r),
        };
        self.audit(tenant, "deploy", name.as_str(), &message, serde_json::json!({ "version": version.record.version }))
            .await;
        Ok(version)
    }

    /// Makes the version before the active one active again.
    pub async fn rollback(&self, tenant: &str, name: &FunctionName) -> Result<Arc<Version>, RegistryError> {
        let _guard = self.changes.lock().await;
        let current =
            self.get(tenant, name.as_str()).ok_or_else(|| RegistryError::NotFound(format!("function `{name}`")))?;
        let previous = self
            .db
            .versions(tenant, name.as_str())
            .await?
            .into_iter()
            .rfind(|r| r.version < current.record.version)
            .ok_or_else(|| RegistryError::NoEarlierVersion {
                name: name.to_string(),
                version: current.record.version,
            })?;
        let version = Arc::new(self.materialize(previous).await?);
        let mut change = self.db.change(tenant).await?;
        change.activate(ObjectKind::Function, tenant, name.as_str(), version.record.version).await?;
        change.end_rollout(tenant, name.as_str()).await?;
        change.commit().await?;
        self.live.insert(version.label.clone(), Arc::clone(&version));
        self.rollouts.remove(&version.label);
        let message =
            format!("rolled back by hand from version {} to {}", current.record.version, version.record.version);
        let detail =
            serde_json::json!({ "from": current.record.version, "to": version.record.version, "automatic": false });
        self.audit(tenant, "rollback", name.as_str(), &message, detail).await;
        Ok(version)
    }

    /// Ends the rollout of `candidate`, promoting it or rolling back to the
    /// stable version. Returns the version now active if this call ended
    /// the rollout, `None` if it had already ended (here or on another node).
    pub async fn end_rollout(
        &self,
        tenant: &str,
        name: &str,
        candidate: i64,
        decision: Decision,
    ) -> Result<Option<Arc<Version>>, RegistryError> {
        let _guard = self.changes.lock().await;
        let label = key(tenant, name);
        let Some(rollout) = self.rollouts.get(&label).map(|r| Arc::clone(r.value())) else { return Ok(None) };
        let mut change = self.db.change(tenant).await?;
        if !change.end_rollout_of(tenant, name, candidate).await? {
            self.rollouts.remove(&label);
            return Ok(None);
        }
        if decision == Decision::RollBack {
            change.activate(ObjectKind::Function, tenant, name, rollout.row.stable_version).await?;
        }
        change.commit().await?;
        self.rollouts.remove(&label);
        if decision == Decision::RollBack {
            self.live.insert(label, Arc::clone(&rollout.stable));
            return Ok(Some(Arc::clone(&rollout.stable)));
        }
        Ok(self.get(tenant, name))
    }

    /// Appends to the audit log (logging, not failing, when it cannot).
    async fn audit(&self, tenant: &str, kind: &str, subject: &str, message: &str, detail: serde_json::Value) {
        self.db.audit_or_log(NewAudit { tenant, kind, subject, message, detail }).await;
    }

    /// Removes a function and frees what only its versions held; requests
    /// already running finish.
    pub async fn delete(&self, tenant: &str, name: &FunctionName) -> Result<(), RegistryError> {
        let _guard = self.changes.lock().await;
        let mut change = self.db.change(tenant).await?;
        let digests = change
            .delete(ObjectKind::Function, tenant, name.as_str())
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("function `{name}`")))?;
        change.end_rollout(tenant, name.as_str()).await?;
        let released = change.release(digests).await?;
        change.commit().await?;
        self.rollouts.remove(&key(tenant, name.as_str()));
        self.audit(tenant, "delete", name.as_str(), "deleted with every version", serde_json::json!({})).await;
        self.live.remove(&key(tenant, name.as_str()));
        self.stats.forget(SeriesKind::Function, tenant, name.as_str());
        self.files.remove(&released);
        Ok(())
    }

    /// Keeps the live versions in step with a database other nodes also
    /// deploy into: new functions, new active versions and deletions show up
    /// here within one `period`.
    pub async fn follow(self: Arc<Self>, period: std::time::Duration) {
        crate::db::follow(period, "functions", || self.sync()).await;
    }

    async fn sync(&self) -> Result<(), RegistryError> {
        // Read under the lock: a deploy of this node that commits between
        // the read and the lock would otherwise be dropped until the next round.
        let _guard = self.changes.lock().await;
        let active = self.db.active_versions().await?;
        let mut seen = std::collections::HashSet::new();
        let mut changed = false;
        for record in active {
            let label = key(&record.tenant, &record.name);
            seen.insert(label.clone());
            let current = self.live.get(&label).map(|v| v.record.version);
            if current != Some(record.version) {
                let version = self.materialize(record).await?;
                tracing::info!(function = %label, version = version.record.version, "picked up from the database");
                self.live.insert(label, Arc::new(version));
                changed = true;
            }
        }
        let before = self.live.len();
        self.live.retain(|label, _| seen.contains(label));
        if changed || self.live.len() != before {
            // Another node deployed or deleted: what it freed goes here too.
            self.files.sweep(&self.db).await?;
        }
        self.sync_rollouts().await
    }

    /// Brings the rollouts in step with the database: another node may have
    /// started one, or ended one by a promotion or a rollback.
    async fn sync_rollouts(&self) -> Result<(), RegistryError> {
        let rows = self.db.rollouts().await?;
        let mut seen = std::collections::HashSet::new();
        for row in rows {
            let label = key(&row.tenant, &row.name);
            seen.insert(label.clone());
            if self.rollouts.get(&label).is_some_and(|r| r.row == row) {
                continue;
            }
            let Some(record) =
                self.db.versions(&row.tenant, &row.name).await?.into_iter().find(|r| r.version == row.stable_version)
            else {
                tracing::warn!(function = %label, version = row.stable_version, "the stable version of a rollout is gone");
                continue;
            };
            let stable = Arc::new(self.materialize(record).await?);
            self.rollouts.insert(label, Arc::new(Rollout::new(row, stable)));
        }
        self.rollouts.retain(|label, _| seen.contains(label));
        Ok(())
    }

    /// Removes what no version references: database copies, component
    /// files, compiled artifacts and the temporary files a crash left.
    async fn sweep(&self) -> anyhow::Result<()> {
        let blobs = self.db.release_orphan_blobs().await?;
        let files = self.files.sweep(&self.db).await?;
        if blobs + files > 0 {
            tracing::info!(blobs, files, "removed orphaned components");
        }
        Ok(())
    }

    /// Whether the catalog database answers.
    pub async fn ready(&self) -> bool {
        self.db.ping().await
    }

    /// The limits a deploy with `options` gets, checked against the host caps.
    pub fn limits_for(&self, options: &DeployOptions) -> Result<FunctionLimits, RegistryError> {
        let caps = self.config.limits;
        let memory_mb = options.memory_mb.unwrap_or(caps.default_memory_mb);
        let timeout_ms = options.timeout_ms.unwrap_or(caps.default_timeout_ms);
        let max_concurrency = options.max_concurrency.unwrap_or(caps.default_max_concurrency);
        let over = |what: &str, asked: u64, cap: u64| {
            RegistryError::BadOption(format!("{what}={asked} is outside the allowed range 1..={cap}"))
        };
        if memory_mb == 0 || memory_mb > caps.max_memory_mb {
            return Err(over("memory_mb", memory_mb.into(), caps.max_memory_mb.into()));
        }
        if timeout_ms == 0 || timeout_ms > caps.max_timeout_ms {
            return Err(over("timeout_ms", timeout_ms, caps.max_timeout_ms));
        }
        if max_concurrency == 0 || max_concurrency > caps.max_concurrency_cap {
            return Err(over("max_concurrency", max_concurrency.into(), caps.max_concurrency_cap.into()));
        }
        Ok(FunctionLimits { memory_mb, timeout_ms, max_concurrency })
    }

    /// Brings a stored version back to life from its cached artifact,
    /// recompiling from the stored component only when the cache lacks it.
    async fn materialize(&self, record: VersionRecord) -> Result<Version, RegistryError> {
        let component = match self.compiler.cached(&record.digest).await? {
            Some(component) => component,
            None => {
                let path = self.files.component_path(&record.digest);
                let bytes = match tokio::fs::read(&path).await {
                    Ok(bytes) => bytes,
                    Err(_) => self.db.blob(&record.digest).await?.with_context(|| {
                        format!("component {} is in neither {} nor the database", record.digest, path.display())
                    })?,
                };
                self.compiler.compile(&record.tenant, &record.digest, bytes.into()).await?
            }
        };
        let entry = self.runtime.prepare(&component)?;
        let limits = FunctionLimits {
            memory_mb: u32::try_from(record.memory_mb).unwrap_or(self.config.limits.default_memory_mb),
            timeout_ms: u64::try_from(record.timeout_ms).unwrap_or(self.config.limits.default_timeout_ms),
            max_concurrency: u32::try_from(record.max_concurrency)
                .unwrap_or(self.config.limits.default_max_concurrency),
        };
        Ok(self.build_version(record, limits, entry))
    }

    fn build_version(&self, record: VersionRecord, limits: FunctionLimits, entry: EntryPoint) -> Version {
        let label = key(&record.tenant, &record.name);
        // Versions of one function share one admission gate while the limit
        // is unchanged, so a redeploy cannot double the concurrency in flight.
        let admission = self
            .get(&record.tenant, &record.name)
            .filter(|v| v.limits.max_concurrency == limits.max_concurrency)
            .map(|v| Arc::clone(&v.admission))
            .unwrap_or_else(|| {
                Arc::new(Admission::new(
                    limits.max_concurrency,
                    self.config.queue_depth,
                    self.config.queue_timeout,
                    self.config.anonymous,
                ))
            });
        let breaker = self.breaker_for(&record);
        let allowed_hosts: Arc<[String]> =
            record.allowed_hosts.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect();
        let metrics = FunctionMetrics::new(&label, &record.tenant);
        let nn_scope = Arc::new(NnScope {
            tenant: Arc::from(record.tenant.as_str()),
            access: ModelAccess::from_stored(record.models.as_deref()),
        });
        let stats = self.stats.series(SeriesKey {
            kind: SeriesKind::Function,
            tenant: Arc::clone(&nn_scope.tenant),
            name: Arc::from(record.name.as_str()),
            version: record.version,
        });
        Version { record, limits, allowed_hosts, nn_scope, entry, admission, breaker, label, metrics, stats }
    }

    /// The breaker of a version with `record`'s settings: the active
    /// version's while its settings are the same, so that neither a redeploy
    /// nor a rollback forgets the failures in a row (or an open breaker).
    fn breaker_for(&self, record: &VersionRecord) -> Option<Arc<Breaker>> {
        let settings = BreakerSettings::of_record(record)?;
        let current = self.get(&record.tenant, &record.name).and_then(|v| v.breaker.clone());
        Some(current.filter(|b| b.settings() == settings).unwrap_or_else(|| Arc::new(Breaker::new(settings))))
    }

    /// `tenant/name` of every live function whose circuit breaker is open (or half-open), sorted.
    pub fn open_breakers(&self) -> Vec<String> {
        let mut open: Vec<String> = self
            .live
            .iter()
            .filter(|entry| entry.value().breaker.as_ref().is_some_and(|b| b.is_open()))
            .map(|entry| entry.key().clone())
            .collect();
        open.sort();
        open
    }
}

/// Parses the `models` deploy option: model names, comma-separated, or `*`
/// for every model of the tenant (the default).
pub fn parse_models(value: &str) -> Result<Option<Vec<String>>, RegistryError> {
    if value == "*" {
        return Ok(None);
    }
    let names: Vec<String> = value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    names.iter().try_for_each(|name| check_model_name(name))?;
    Ok(Some(names))
}

/// Parses the `allowed_hosts` deploy option (comma-separated host names).
pub fn parse_allowed_hosts(value: &str) -> Result<Vec<String>, RegistryError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            let valid =
                host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if valid {
                Ok(host.to_ascii_lowercase())
            } else {
                Err(RegistryError::BadOption(format!(
                    "allowed_hosts entry `{host}` is not a host name; give names like api.example.com, comma-separated"
                )))
            }
        })
        .collect()
}
