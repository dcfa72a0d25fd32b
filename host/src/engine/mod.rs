//! The wasmtime engine: compilation with an on-disk cache, the linker, and
//! the per-version entry points that requests instantiate from.

pub(crate) mod bindings;
mod error;
pub mod limits;
mod outbound;
mod response;
mod state;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config as WasmtimeConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bindings::{NamedTensor, RawRecord, Request, Response, Tensor, TensorType};
pub use error::ComponentError;
pub use outbound::{OutboundPolicy, PostError, is_internal_address, post};
pub use response::{Head, ResponseSink, response_channel};
pub use state::{HostState, InstanceLimits};

/// What a component is, judged by what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    /// Exports `muon:function/handle`.
    Handler,
    /// Exports `muon:function/stream-handle` (the `streaming-handler` world).
    Streaming,
    /// Exports `muon:function/preprocess`.
    Preprocessor,
    /// Exports `muon:function/train`.
    TrainingStep,
    /// Exports `wasi:http/incoming-handler` (the `wasi:http/proxy` world of
    /// WASI 0.2) or `wasi:http/handler` (the `wasi:http/service` world of
    /// WASI 0.3).
    Http,
}

impl FunctionKind {
    /// The kind's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handler => "handler",
            Self::Streaming => "streaming-handler",
            Self::Preprocessor => "preprocessor",
            Self::TrainingStep => "training-step",
            Self::Http => "http",
        }
    }
}

/// A component linked and ready to instantiate, once per version.
#[derive(Clone)]
pub enum EntryPoint {
    /// The `muon:function/handler` world.
    Handler(bindings::handler::HandlerPre<HostState>),
    /// The `muon:function/streaming-handler` world.
    Streaming(bindings::streaming::StreamingHandlerPre<HostState>),
    /// The `muon:function/preprocessor` world.
    Preprocessor(bindings::preprocessor::PreprocessorPre<HostState>),
    /// The `muon:function/training-step` world.
    TrainingStep(bindings::training::TrainingStepPre<HostState>),
    /// The `wasi:http/proxy` world (WASI 0.2).
    Http(wasmtime_wasi_http::p2::bindings::ProxyPre<HostState>),
    /// The `wasi:http/service` world (WASI 0.3, component-model async).
    HttpService(wasmtime_wasi_http::p3::bindings::ServicePre<HostState>),
}

impl EntryPoint {
    /// The engine this entry point was compiled for; its stores must be
    /// created on it.
    pub fn engine(&self) -> &Engine {
        match self {
            Self::Handler(p) => p.engine(),
            Self::Streaming(p) => p.engine(),
            Self::Preprocessor(p) => p.engine(),
            Self::TrainingStep(p) => p.engine(),
            Self::Http(p) => p.engine(),
            Self::HttpService(p) => p.engine(),
        }
    }

    /// The kind of function behind this entry point.
    pub fn kind(&self) -> FunctionKind {
        match self {
            Self::Handler(_) => FunctionKind::Handler,
            Self::Streaming(_) => FunctionKind::Streaming,
            Self::Preprocessor(_) => FunctionKind::Preprocessor,
            Self::TrainingStep(_) => FunctionKind::TrainingStep,
            Self::Http(_) | Self::HttpService(_) => FunctionKind::Http,
        }
    }
}

/// Interfaces a guest may import; everything else is refused at deploy.
const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "wasi:http/client",
    "wasi:nn/",
    "muon:function/types",
    "muon:function/response-stream",
];

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Where compiled artifacts are cached.
    pub compiled_dir: PathBuf,
    /// Instances alive at once in each engine (its pooling allocator's size).
    pub max_instances: u32,
    /// The largest memory limit any function may have, in MiB.
    pub max_memory_mb: u32,
    /// Wasm stack per instance, in bytes.
    pub max_wasm_stack: usize,
}

/// The engines with their linkers and the compiled-artifact cache.
///
/// Two engines, because turning component-model async on makes every call
/// of every component go through wasmtime's concurrent task machinery, which
/// cost WASI 0.2 `hello` 9-22% of its throughput: components that validate
/// without it (WASI 0.2 and muon's worlds) run on the `plain` engine, and
/// only WASI 0.3 components, which need it, on the `concurrent` one.
pub struct Runtime {
    plain: Flavor,
    concurrent: Flavor,
    compiled_dir: PathBuf,
}

/// One engine, the linker over it, and the hash that names its artifacts.
struct Flavor {
    engine: Engine,
    linker: Linker<HostState>,
    compatibility: u64,
}

impl Flavor {
    fn new(config: &EngineSettings, concurrent: bool) -> anyhow::Result<Self> {
        let engine = Engine::new(&wasmtime_config(config, concurrent)?)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        if concurrent {
            // WASI 0.3 beside 0.2: the interfaces differ by version, so one
            // linker serves both, and a 0.3 guest built with Rust's 0.2 std
            // gets both.
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        }
        crate::nn::wasi::add_to_linker(&mut linker, HostState::nn)?;
        bindings::streaming::muon::function::response_stream::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state| state,
        )?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // Named by flavor too: the concurrent engine's settings are those of
        // the one engine before it, whose artifacts include WASI 0.2
        // components; those are swept and recompiled on the plain engine
        // instead of staying on the slower one.
        concurrent.hash(&mut hasher);
        Ok(Self { engine, linker, compatibility: hasher.finish() })
    }
}

/// A component compiled by one of the runtime's engines, not yet cached.
pub struct Precompiled {
    concurrent: bool,
    serialized: Vec<u8>,
}

impl Precompiled {
    /// Whether the component needs component-model async (a WASI 0.3
    /// component) and so was compiled on the concurrent engine.
    pub fn needs_async(&self) -> bool {
        self.concurrent
    }
}

impl Runtime {
    /// Builds the engines (Cranelift, pooling allocator, epochs) and linkers.
    pub fn new(config: &EngineSettings) -> anyhow::Result<Self> {
        let plain = Flavor::new(config, false)?;
        let concurrent = Flavor::new(config, true)?;
        let compiled_dir = config.compiled_dir.clone();
        std::fs::create_dir_all(&compiled_dir).with_context(|| format!("cannot create {}", compiled_dir.display()))?;
        Ok(Self { plain, concurrent, compiled_dir })
    }

    fn flavors(&self) -> [&Flavor; 2] {
        [&self.plain, &self.concurrent]
    }

    fn flavor(&self, concurrent: bool) -> &Flavor {
        if concurrent { &self.concurrent } else { &self.plain }
    }

    /// Starts the process-wide epoch ticker that drives guest deadlines.
    pub fn start_epoch_ticker(&self, tick: Duration) {
        let engines = self.flavors().map(|flavor| flavor.engine.weak());
        let spawned = std::thread::Builder::new().name("muon-epoch".into()).spawn(move || {
            loop {
                let mut alive = false;
                for engine in engines.iter().filter_map(|weak| weak.upgrade()) {
                    engine.increment_epoch();
                    alive = true;
                }
                if !alive {
                    break;
                }
                std::thread::sleep(tick);
            }
        });
        if let Err(err) = spawned {
            tracing::error!(%err, "cannot start the epoch ticker; guests will not yield");
        }
    }

    /// The compiled artifact cached for `digest`, if there is a readable one
    /// (an unreadable one is removed).
    pub fn cached(&self, digest: &str) -> Option<Component> {
        for flavor in self.flavors() {
            let path = self.artifact_path(flavor, digest);
            if !path.exists() {
                continue;
            }
            match load_artifact(flavor, &path) {
                Ok(component) => return Some(component),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), path = %path.display(), "discarding unreadable compiled artifact");
                    crate::files::remove_if_present(&path);
                }
            }
        }
        None
    }

    /// Checks that `bytes` are a component within [`limits`], without compiling.
    pub fn check(bytes: &[u8]) -> Result<(), ComponentError> {
        check_component_bytes(bytes)?;
        limits::check(bytes)
    }

    /// Checks that `bytes` are a component within [`limits`], then compiles
    /// it to the serialized form [`Runtime::store_artifact`] takes: on the
    /// plain engine when it validates there, else on the concurrent one.
    ///
    /// Blocking and CPU-heavy: call from a blocking thread.
    pub fn precompile(&self, bytes: &[u8]) -> Result<Precompiled, ComponentError> {
        Self::check(bytes)?;
        // Validation fails before Cranelift runs, so a WASI 0.3 component
        // costs one extra validation, not an extra compile.
        if let Ok(serialized) = self.plain.engine.precompile_component(bytes) {
            return Ok(Precompiled { concurrent: false, serialized });
        }
        self.concurrent
            .engine
            .precompile_component(bytes)
            .map(|serialized| Precompiled { concurrent: true, serialized })
            .map_err(|err| ComponentError::Invalid(format!("the component does not validate: {err:#}")))
    }

    /// Writes a compiled artifact into the cache and loads it.
    pub fn store_artifact(&self, digest: &str, compiled: &Precompiled) -> anyhow::Result<Component> {
        let flavor = self.flavor(compiled.concurrent);
        let path = self.artifact_path(flavor, digest);
        crate::files::write_atomically(&path, &compiled.serialized).context("cannot cache the compiled component")?;
        load_artifact(flavor, &path)
    }

    /// Removes the cached artifacts of `digest`, if any.
    pub fn remove_artifact(&self, digest: &str) {
        for flavor in self.flavors() {
            crate::files::remove_if_present(&self.artifact_path(flavor, digest));
        }
    }

    /// Removes what a crash left in the artifact cache (temporary files),
    /// artifacts an older engine compiled, and those of digests `keep` refuses.
    pub fn sweep_artifacts(&self, keep: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
        let suffixes = self.flavors().map(|flavor| format!("-{:016x}.cwasm", flavor.compatibility));
        crate::files::sweep(&self.compiled_dir, |name| {
            suffixes.iter().any(|suffix| name.strip_suffix(suffix.as_str()).is_some_and(&keep))
        })
    }

    fn artifact_path(&self, flavor: &Flavor, digest: &str) -> PathBuf {
        self.compiled_dir.join(format!("{digest}-{:016x}.cwasm", flavor.compatibility))
    }

    /// Checks the imports, links the component and finds its kind.
    pub fn prepare(&self, component: &Component) -> Result<EntryPoint, ComponentError> {
        let concurrent = Engine::same(component.engine(), &self.concurrent.engine);
        let flavor = self.flavor(concurrent);
        let component_type = component.component_type();
        for (name, _) in component_type.imports(&flavor.engine) {
            if !PROVIDED_IMPORTS.iter().any(|prefix| name.starts_with(prefix)) {
                let detail = "; muon provides wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, \
                     wasi:sockets, wasi:http/types, wasi:http/outgoing-handler (0.2), wasi:http/client (0.3), \
                     wasi:nn@0.2.0-rc-2024-10-28, muon:function/types and muon:function/response-stream"
                    .to_owned();
                return Err(ComponentError::UnknownImport { import: name.to_owned(), detail });
            }
        }
        let pre = flavor.linker.instantiate_pre(component).map_err(|err| ComponentError::UnknownImport {
            import: "(see detail)".to_owned(),
            detail: format!(": {err:#}"),
        })?;
        entry_point(pre)
    }
}

fn load_artifact(flavor: &Flavor, path: &Path) -> anyhow::Result<Component> {
    // SAFETY: only files this process wrote with `precompile_component`
    // live in `compiled_dir`, named by the engine's compatibility hash;
    // uploads of precompiled code are refused in `check_component_bytes`.
    unsafe { Component::deserialize_file(&flavor.engine, path) }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load compiled component {}", path.display()))
}

fn entry_point(pre: InstancePre<HostState>) -> Result<EntryPoint, ComponentError> {
    if let Ok(p) = bindings::handler::HandlerPre::new(pre.clone()) {
        return Ok(EntryPoint::Handler(p));
    }
    if let Ok(p) = bindings::streaming::StreamingHandlerPre::new(pre.clone()) {
        return Ok(EntryPoint::Streaming(p));
    }
    if let Ok(p) = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre.clone()) {
        return Ok(EntryPoint::Http(p));
    }
    if let Ok(p) = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
        return Ok(EntryPoint::HttpService(p));
    }
    if let Ok(p) = bindings::preprocessor::PreprocessorPre::new(pre.clone()) {
        return Ok(EntryPoint::Preprocessor(p));
    }
    if let Ok(p) = bindings::training::TrainingStepPre::new(pre) {
        return Ok(EntryPoint::TrainingStep(p));
    }
    Err(ComponentError::Invalid(
        "the component exports none of muon:function/handle, muon:function/stream-handle, \
         wasi:http/incoming-handler (0.2), wasi:http/handler (0.3), \
         muon:function/preprocess or muon:function/train (at compatible versions)"
            .to_owned(),
    ))
}

/// Refuses what is not a component before handing bytes to Cranelift.
fn check_component_bytes(bytes: &[u8]) -> Result<(), ComponentError> {
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(ComponentError::Invalid(
            "precompiled native code is refused; upload the component's .wasm and muon compiles it".into(),
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ComponentError::Invalid(
            "the body is not WebAssembly (no \\0asm header); upload a component built for wasm32-wasip2".into(),
        ));
    }
    // Bytes 4..8 hold the version and layer: 1/0 is a core module, 0x0d/1 a component.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(ComponentError::Invalid(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it \
             with `wasm-tools component new`"
                .into(),
        ));
    }
    Ok(())
}

fn wasmtime_config(config: &EngineSettings, concurrent: bool) -> anyhow::Result<WasmtimeConfig> {
    let instances = config.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(8))
        .total_stacks(instances)
        .max_memory_size(usize::try_from(config.max_memory_mb)? << 20)
        // Reset linear memory in place instead of unmapping it: PAGEMAP_SCAN
        // (Linux 6.7+) finds the pages a request dirtied and only those are
        // restored, so there is no madvise, TLB shootdown or page fault on the
        // next instantiation. Where the ioctl is missing, the first
        // `keep_resident` bytes are memset instead.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10);
    let mut wasmtime = WasmtimeConfig::new();
    wasmtime
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        // WASI 0.3 guests: async lifts and lowers, streams and futures.
        .concurrency_support(concurrent)
        .wasm_component_model_async(concurrent)
        .wasm_component_model_error_context(concurrent)
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack + (256 << 10))
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(wasmtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_components_are_told_apart() {
        let core = b"\0asm\x01\0\0\0";
        let text = b"hello world";
        let component = b"\0asm\x0d\0\x01\0";
        assert!(matches!(check_component_bytes(core), Err(ComponentError::Invalid(m)) if m.contains("core")));
        assert!(
            matches!(check_component_bytes(text), Err(ComponentError::Invalid(m)) if m.contains("not WebAssembly"))
        );
        assert!(check_component_bytes(component).is_ok());
    }
}
