//! Compiles that are fair between tenants and bounded in time.
//!
//! A tenant compiles one component at a time; its other deploys wait behind
//! it, not in front of other tenants'. A small host-wide pool bounds how many
//! compile at once, so a burst of deploys cannot take every core from the
//! requests being served for long. Each compile runs on a thread pool of its
//! own, so compiles share the cores instead of queueing behind one another.
//! Waiting and compiling share one deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};
use wasmtime::component::Component;

use super::RegistryError;
use crate::engine::Runtime;

/// Compiles components into the runtime's artifact cache.
pub struct Compiler {
    runtime: Arc<Runtime>,
    host: Arc<Semaphore>,
    tenants: DashMap<String, Arc<Semaphore>>,
    timeout: Duration,
}

impl Compiler {
    /// At most `slots` compiles at once, one per tenant, each within `timeout`.
    pub fn new(runtime: Arc<Runtime>, slots: usize, timeout: Duration) -> Self {
        Self { runtime, host: Arc::new(Semaphore::new(slots)), tenants: DashMap::new(), timeout }
    }

    /// The component for `bytes` (whose digest is `digest`), from the
    /// artifact cache or compiled for `tenant`.
    pub async fn compile(&self, tenant: &str, digest: &str, bytes: bytes::Bytes) -> Result<Component, RegistryError> {
        if let Some(component) = self.cached(digest).await? {
            return Ok(component);
        }
        // What is refused anyway is refused without waiting for a slot.
        let checked = bytes.clone();
        tokio::task::spawn_blocking(move || Runtime::check(&checked)).await.context("the check task failed")??;
        let deadline = Instant::now() + self.timeout;
        let tenant_slot = self.tenant_slot(tenant);
        let result = self.compile_in_slots(&tenant_slot, deadline, digest, bytes).await;
        drop(tenant_slot);
        // Forget idle tenants; a permit still held keeps its semaphore alive.
        self.tenants.remove_if(tenant, |_, slot| Arc::strong_count(slot) == 1);
        result
    }

    async fn compile_in_slots(
        &self,
        tenant_slot: &Arc<Semaphore>,
        deadline: Instant,
        digest: &str,
        bytes: bytes::Bytes,
    ) -> Result<Component, RegistryError> {
        let busy = |_| RegistryError::CompileBusy {
            retry_after_s: u32::try_from(self.timeout.as_secs()).unwrap_or(60).max(1),
        };
        let own = timeout_at(deadline, Arc::clone(tenant_slot).acquire_owned()).await.map_err(busy)?;
        let host = timeout_at(deadline, Arc::clone(&self.host).acquire_owned()).await.map_err(busy)?;
        let permits = (own.context("compile slots closed")?, host.context("compile slots closed")?);
        // A deploy of the same bytes may have compiled them while this one waited.
        if let Some(component) = self.cached(digest).await? {
            return Ok(component);
        }
        let abandoned = Arc::new(Mutex::new(false));
        let task = self.spawn(permits, digest.to_owned(), bytes, Arc::clone(&abandoned));
        match timeout_at(deadline, task).await {
            Ok(joined) => {
                let component = joined.context("the compile task failed")??;
                record_cache("miss");
                Ok(component)
            }
            Err(_) => {
                // Cranelift cannot be interrupted: the compile runs on, holding
                // its slots, but writes nothing once it finds itself abandoned.
                *abandoned.lock().map_err(|_| anyhow::anyhow!("compile flag poisoned"))? = true;
                let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(digest, timeout_ms, "compile passed its deadline");
                Err(RegistryError::CompileTimeout { timeout_ms })
            }
        }
    }

    fn spawn(
        &self,
        permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
        digest: String,
        bytes: bytes::Bytes,
        abandoned: Arc<Mutex<bool>>,
    ) -> tokio::task::JoinHandle<Result<Component, RegistryError>> {
        let runtime = Arc::clone(&self.runtime);
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        tokio::task::spawn_blocking(move || {
            let _permits = permits;
            // A pool of its own: in rayon's global pool, which wasmtime
            // compiles in by default, a large component's functions queue
            // ahead of every other compile's; separate pools share the cores.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("muon-compile-{i}"))
                .build()
                .context("cannot start the compile threads")?;
            let serialized = pool.install(|| runtime.precompile(&bytes))?;
            // Held while writing, so the deadline either comes before the
            // artifact exists (and none is written) or after (and the
            // deploy's cleanup removes it).
            let abandoned = abandoned.lock().map_err(|_| anyhow::anyhow!("compile flag poisoned"))?;
            if *abandoned {
                return Err(RegistryError::CompileAbandoned);
            }
            Ok(runtime.store_artifact(&digest, &serialized)?)
        })
    }

    /// The component cached for `digest`, if any.
    pub async fn cached(&self, digest: &str) -> Result<Option<Component>, RegistryError> {
        let runtime = Arc::clone(&self.runtime);
        let digest = digest.to_owned();
        let component =
            tokio::task::spawn_blocking(move || runtime.cached(&digest)).await.context("the cache task failed")?;
        if component.is_some() {
            record_cache("hit");
        }
        Ok(component)
    }

    fn tenant_slot(&self, tenant: &str) -> Arc<Semaphore> {
        Arc::clone(self.tenants.entry(tenant.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(1))).value())
    }
}

fn record_cache(result: &'static str) {
    metrics::counter!("muon_compile_cache_total", "result" => result).increment(1);
}
