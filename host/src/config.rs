//! Server configuration: one struct serves the TOML file and the command line.
//!
//! Every field is optional in both places; a flag overrides the file, the file
//! overrides the documented default. [`Settings::resolve`] turns the merged
//! settings into the [`Config`] the server runs with, checking that per-function
//! defaults fit under the host-wide caps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::engine::EngineSettings;
use crate::invoke::InvokeSettings;
use crate::jobs::JobSettings;
use crate::ledger::pricing::Plan;
use crate::ledger::{LedgerSettings, LedgerSync};
use crate::monitor::MonitorSettings;
use crate::nn::NnConfig;
use crate::nn::backend::BackendKind;
use crate::registry::{LimitDefaults, RegistrySettings};
use crate::stats::StatsSettings;
use crate::tenancy::{AnonymousLimits, Quotas, TenancyConfig, TenantSettings};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./muon-data";

/// Settings given in a TOML file (`--config`) or as `muon serve` flags.
///
/// Unknown keys in the file are an error, so a typo never goes unnoticed.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address serving `GET /metrics` without a key, for a scraper on a private network
    /// [default: none; `/metrics` is then served on `listen` to the admin key only].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the database, components and compiled artifacts [default: ./muon-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Memory limit of a function that names none, in MiB [default: 128].
    #[arg(long)]
    pub default_memory_mb: Option<u32>,
    /// Largest memory limit a deploy may ask for, in MiB [default: 1024].
    #[arg(long)]
    pub max_memory_mb: Option<u32>,
    /// Deadline of a function that names none, in milliseconds [default: 30000].
    #[arg(long)]
    pub default_timeout_ms: Option<u64>,
    /// Longest deadline a deploy may ask for, in milliseconds [default: 300000].
    #[arg(long)]
    pub max_timeout_ms: Option<u64>,
    /// Concurrent instances of a function that names no limit [default: 64].
    #[arg(long)]
    pub default_max_concurrency: Option<u32>,
    /// Largest `max_concurrency` a deploy may ask for [default: 1000].
    #[arg(long)]
    pub max_concurrency_cap: Option<u32>,
    /// Requests that may wait for a busy function before `503` [default: 256].
    #[arg(long)]
    pub queue_depth: Option<u32>,
    /// How long a request may wait for a busy function, in milliseconds [default: 1000].
    #[arg(long)]
    pub queue_timeout_ms: Option<u64>,
    /// Largest component upload, in bytes [default: 67108864].
    #[arg(long)]
    pub max_deploy_bytes: Option<u64>,
    /// Largest dataset upload, in bytes; bigger ones get `413` before more is read [default: 1073741824].
    #[arg(long)]
    pub max_dataset_bytes: Option<u64>,
    /// Largest invocation request body, in bytes [default: 8388608].
    #[arg(long)]
    pub max_request_bytes: Option<u64>,
    /// Largest response a function may return, in bytes [default: 16777216].
    #[arg(long)]
    pub max_response_bytes: Option<u64>,
    /// Most request headers accepted before `431` [default: 64].
    #[arg(long)]
    pub max_headers: Option<usize>,
    /// Largest request head (request line plus headers) before `431`, in bytes [default: 16384].
    #[arg(long)]
    pub max_header_bytes: Option<usize>,
    /// Time a client has to send its request headers, in milliseconds [default: 10000].
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// Time a client has to send a request body, in milliseconds, plus one second per MiB received
    /// so large uploads on a steady link finish; past it, `408` and the connection closes [default: 30000].
    #[arg(long)]
    pub body_read_timeout_ms: Option<u64>,
    /// Bytes that all request bodies being received may hold together; past it, `503` with
    /// `Retry-After` [default: 1073741824]. At least the largest body limit.
    #[arg(long)]
    pub max_inflight_body_bytes: Option<u64>,
    /// Calls per second without the tenant's key that each public function accepts, apart from
    /// the tenant's own quotas [default: none: no rate limit of their own].
    #[arg(long)]
    pub anonymous_requests_per_second: Option<u32>,
    /// Calls without the tenant's key of one public function running at once, apart from the
    /// tenant's own quotas [default: half the function's max_concurrency].
    #[arg(long)]
    pub anonymous_max_concurrency: Option<u32>,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT, in milliseconds [default: 10000].
    #[arg(long)]
    pub shutdown_grace_ms: Option<u64>,
    /// WebAssembly stack limit per instance, in KiB [default: 512].
    #[arg(long)]
    pub max_wasm_stack_kb: Option<usize>,
    /// Most host resources (streams, handles) one instance may hold [default: 10000].
    #[arg(long)]
    pub max_guest_resources: Option<usize>,
    /// Instances that may exist at once in each engine (WASI 0.2 and muon's worlds; WASI 0.3) [default: 1000].
    #[arg(long)]
    pub max_instances: Option<u32>,
    /// Bytes of guest stdout and stderr kept per request for the log [default: 65536].
    #[arg(long)]
    pub guest_output_bytes: Option<usize>,
    /// Let functions that name allowed hosts reach loopback and private addresses [default: false].
    #[arg(long)]
    pub allow_private_outbound: Option<bool>,
    /// PostgreSQL URL (`postgres://...`) for a shared catalog and ledger [default: SQLite in the data dir].
    #[arg(long, env = "MUON_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Meter every request and write it to the ledger [default: true].
    #[arg(long)]
    pub metering: Option<bool>,
    /// When usage records reach the disk: `interval` (in muon's journal before the response, so
    /// a crash of muon loses nothing; synced to disk every `ledger_sync_interval_ms` and moved
    /// into the database once a second) or `always` (synced into the database before the
    /// response) [default: interval].
    #[arg(long, value_enum)]
    pub ledger_sync: Option<LedgerSync>,
    /// With `ledger_sync = "interval"`, the longest a usage record waits in muon's journal to
    /// be synced to disk, in milliseconds: what a power loss can lose [default: 50].
    #[arg(long)]
    pub ledger_sync_interval_ms: Option<u64>,
    /// Versions of a function kept, newest first [default: 10]. The active
    /// version and the one before it (the rollback target) are always kept.
    #[arg(long)]
    pub max_versions_kept: Option<usize>,
    /// Compilations that may run at once on the host [default: 2]. Each
    /// tenant has at most one of them, so one tenant cannot hold the others.
    #[arg(long)]
    pub compile_slots: Option<usize>,
    /// Time a deploy may spend waiting for and compiling its component, in
    /// milliseconds [default: 60000]. Past it the deploy answers `422
    /// compile_timeout` (or `503 compile_busy` when it never got to compile).
    #[arg(long)]
    pub compile_timeout_ms: Option<u64>,
    /// Default quotas of every tenant (file only: `[quotas]`).
    #[arg(skip)]
    pub quotas: Option<Quotas>,
    /// Price plans by name (file only: `[plans.NAME]`); `default` applies to tenants without one.
    #[arg(skip)]
    pub plans: Option<BTreeMap<String, Plan>>,
    /// Per-tenant plan and quotas (file only: `[tenants.NAME]`).
    #[arg(skip)]
    pub tenants: Option<BTreeMap<String, TenantSettings>>,
    /// Inference (`[nn]` in the file).
    #[command(flatten)]
    #[serde(default)]
    pub nn: NnSettings,
    /// Training jobs (`[jobs]` in the file).
    #[command(flatten)]
    #[serde(default)]
    pub jobs: JobsSettings,
    /// Operations: statistics, detectors, rollouts (`[monitor]` in the file).
    #[command(flatten)]
    #[serde(default)]
    pub monitor: MonitorFileSettings,
}

/// Operations: the `[monitor]` table of the file, `--monitor-*` flags.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct MonitorFileSettings {
    /// Keep live statistics, run the anomaly detectors and guard rollouts [default: true].
    #[arg(long = "monitor-enabled")]
    pub enabled: Option<bool>,
    /// Length of a statistics window, in milliseconds [default: 10000].
    #[arg(long = "monitor-window-ms")]
    pub window_ms: Option<u64>,
    /// How long windows are kept, in seconds [default: 86400].
    #[arg(long = "monitor-retention-s")]
    pub retention_s: Option<u64>,
    /// Windows kept in all, shared among every function and model; bounds the statistics' memory [default: 200000].
    #[arg(long = "monitor-max-windows")]
    pub max_windows: Option<usize>,
    /// How long a plain deploy is watched against the version before it; 0 turns watching off [default: 120].
    #[arg(long = "monitor-watch-s")]
    pub watch_s: Option<u64>,
    /// Calls a new version needs before a guarded rollout judges it [default: 50].
    #[arg(long = "monitor-min-sample")]
    pub min_sample: Option<u64>,
    /// Whether alert sinks may be private or loopback addresses [default: the value of allow_private_outbound].
    #[arg(long = "monitor-allow-private-sinks")]
    pub allow_private_sinks: Option<bool>,
    /// Host defaults of the detectors' thresholds (file only: `[monitor.thresholds]`).
    #[arg(skip)]
    pub thresholds: Option<crate::api::Thresholds>,
}

impl MonitorFileSettings {
    fn or(self, base: MonitorFileSettings) -> MonitorFileSettings {
        MonitorFileSettings {
            enabled: self.enabled.or(base.enabled),
            window_ms: self.window_ms.or(base.window_ms),
            retention_s: self.retention_s.or(base.retention_s),
            max_windows: self.max_windows.or(base.max_windows),
            watch_s: self.watch_s.or(base.watch_s),
            min_sample: self.min_sample.or(base.min_sample),
            allow_private_sinks: self.allow_private_sinks.or(base.allow_private_sinks),
            thresholds: self.thresholds.or(base.thresholds),
        }
    }

    fn resolve(self, allow_private_outbound: bool) -> anyhow::Result<MonitorSettings> {
        let defaults = MonitorSettings::default();
        let thresholds = self.thresholds.unwrap_or_default();
        crate::monitor::check_thresholds(&thresholds)
            .map_err(|message| anyhow::anyhow!("[monitor.thresholds]: {message}"))?;
        let enabled = self.enabled.unwrap_or(defaults.enabled);
        Ok(MonitorSettings {
            enabled,
            stats: StatsSettings {
                enabled,
                window: self.window_ms.map_or(defaults.stats.window, |ms| Duration::from_millis(ms.max(100))),
                retention: self.retention_s.map_or(defaults.stats.retention, Duration::from_secs),
                max_windows: self.max_windows.unwrap_or(defaults.stats.max_windows).max(1),
            },
            defaults: defaults.defaults.with(&thresholds),
            watch: self.watch_s.map_or(defaults.watch, Duration::from_secs),
            min_sample: self.min_sample.unwrap_or(defaults.min_sample).max(1),
            allow_private_sinks: self.allow_private_sinks.unwrap_or(allow_private_outbound),
        })
    }
}

/// Training jobs: the `[jobs]` table of the file, `--jobs-*` flags.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct JobsSettings {
    /// Trials this node runs at once, on their own workers so that serving stays responsive [default: half the CPUs, at least 1].
    #[arg(long = "jobs-workers")]
    pub workers: Option<usize>,
    /// How long a node's lease of a trial lasts unrenewed; after it another node resumes the trial [default: 15000].
    #[arg(long = "jobs-lease-ms")]
    pub lease_ms: Option<u64>,
    /// How often a node looks for trials it was not told about (other nodes' jobs, expired leases) [default: 1000].
    #[arg(long = "jobs-poll-ms")]
    pub poll_ms: Option<u64>,
}

impl JobsSettings {
    fn or(self, base: JobsSettings) -> JobsSettings {
        JobsSettings {
            workers: self.workers.or(base.workers),
            lease_ms: self.lease_ms.or(base.lease_ms),
            poll_ms: self.poll_ms.or(base.poll_ms),
        }
    }
}

/// Inference settings: the `[nn]` table of the file, `--nn-*` flags.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct NnSettings {
    /// Inference threads that load and run models [default: the number of CPUs].
    #[arg(long = "nn-threads")]
    pub threads: Option<usize>,
    /// ONNX Runtime sessions per model, i.e. requests computing on one model at once [default: nn-threads].
    #[arg(long = "nn-sessions-per-model")]
    pub sessions_per_model: Option<usize>,
    /// Threads each ONNX Runtime session uses for one inference [default: 1].
    #[arg(long = "nn-intra-op-threads")]
    pub intra_op_threads: Option<usize>,
    /// Path of libonnxruntime.so [default: beside the binary, or ../onnxruntime/ from it].
    #[arg(long = "onnxruntime-library", env = "MUON_ORT_DYLIB")]
    pub onnxruntime_library: Option<PathBuf>,
    /// Backend of models uploaded without one: tract or onnxruntime [default: onnxruntime when it loads, else tract].
    #[arg(long = "nn-default-backend")]
    pub default_backend: Option<String>,
    /// Serve `target=gpu` models on CPU, with a warning, when no GPU is usable [default: false: refuse them].
    #[arg(long = "gpu-fallback-to-cpu")]
    pub gpu_fallback_to_cpu: Option<bool>,
    /// Largest model upload, in bytes [default: 536870912].
    #[arg(long = "max-model-bytes")]
    pub max_model_bytes: Option<u64>,
    /// Largest model a guest may pass to wasi-nn `load`, in bytes [default: 67108864].
    #[arg(long = "nn-max-load-bytes")]
    pub max_load_bytes: Option<u64>,
    /// Most inference threads one tenant holds at once, so that others always find one [default: half of nn-threads, at least 1].
    #[arg(long = "nn-tenant-threads")]
    pub tenant_threads: Option<usize>,
    /// Threads that load models, apart from the inference threads [default: 2].
    #[arg(long = "nn-load-threads")]
    pub load_threads: Option<usize>,
    /// How long a model may take to load, in milliseconds [default: 30000].
    #[arg(long = "nn-load-timeout-ms")]
    pub load_timeout_ms: Option<u64>,
    /// Most nodes in a model's graph, subgraphs included [default: 10000].
    #[arg(long = "nn-max-nodes")]
    pub max_nodes: Option<usize>,
    /// Largest tensor that constant folding may make when a model loads, in bytes; a larger model file raises it to its own size [default: 67108864].
    #[arg(long = "nn-max-fold-bytes")]
    pub max_fold_bytes: Option<u64>,
    /// A model whose last compute took at most this many microseconds runs the next one on the same dimensions on the calling thread, not the inference pool, saving two thread switches; 0 sends every compute to the pool [default: 200].
    #[arg(long = "nn-inline-compute-us")]
    pub inline_compute_us: Option<u64>,
}

impl NnSettings {
    fn or(self, base: NnSettings) -> NnSettings {
        NnSettings {
            threads: self.threads.or(base.threads),
            sessions_per_model: self.sessions_per_model.or(base.sessions_per_model),
            intra_op_threads: self.intra_op_threads.or(base.intra_op_threads),
            onnxruntime_library: self.onnxruntime_library.or(base.onnxruntime_library),
            default_backend: self.default_backend.or(base.default_backend),
            gpu_fallback_to_cpu: self.gpu_fallback_to_cpu.or(base.gpu_fallback_to_cpu),
            max_model_bytes: self.max_model_bytes.or(base.max_model_bytes),
            max_load_bytes: self.max_load_bytes.or(base.max_load_bytes),
            tenant_threads: self.tenant_threads.or(base.tenant_threads),
            load_threads: self.load_threads.or(base.load_threads),
            load_timeout_ms: self.load_timeout_ms.or(base.load_timeout_ms),
            max_nodes: self.max_nodes.or(base.max_nodes),
            max_fold_bytes: self.max_fold_bytes.or(base.max_fold_bytes),
            inline_compute_us: self.inline_compute_us.or(base.inline_compute_us),
        }
    }

    /// The inference settings, for a host whose functions hold at most
    /// `max_tensor_bytes` (the largest memory limit).
    fn resolve(self, max_tensor_bytes: u64) -> anyhow::Result<NnConfig> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = self.threads.unwrap_or(cpus).max(1);
        let default_backend = match self.default_backend.as_deref() {
            None => None,
            Some(name) => Some(
                BackendKind::parse(name)
                    .with_context(|| format!("unknown nn default_backend `{name}`; use tract or onnxruntime"))?,
            ),
        };
        Ok(NnConfig {
            threads,
            tenant_threads: self.tenant_threads.unwrap_or(threads / 2).clamp(1, threads),
            load_threads: self.load_threads.unwrap_or(2).max(1),
            load_timeout: std::time::Duration::from_millis(self.load_timeout_ms.unwrap_or(30_000).max(1)),
            max_nodes: self.max_nodes.unwrap_or(10_000).max(1),
            max_fold_bytes: self.max_fold_bytes.unwrap_or(64 << 20),
            max_tensor_bytes,
            sessions_per_model: self.sessions_per_model.unwrap_or(threads).max(1),
            intra_op_threads: self.intra_op_threads.unwrap_or(1).max(1),
            onnxruntime_library: self.onnxruntime_library,
            default_backend,
            gpu_fallback_to_cpu: self.gpu_fallback_to_cpu.unwrap_or(false),
            max_model_bytes: self.max_model_bytes.unwrap_or(512 << 20),
            max_load_bytes: self.max_load_bytes.unwrap_or(64 << 20),
            inline_compute: std::time::Duration::from_micros(self.inline_compute_us.unwrap_or(200)),
        })
    }
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API and the functions are served.
    pub listen: SocketAddr,
    /// Where `/metrics` is served without a key, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the database, components and compiled artifacts live.
    pub data_dir: PathBuf,
    /// Per-function defaults and caps.
    pub limits: LimitDefaults,
    /// Requests that may wait for a busy function.
    pub queue_depth: u32,
    /// How long a request may wait for a busy function.
    pub queue_timeout: Duration,
    /// Largest component upload.
    pub max_deploy_bytes: u64,
    /// Largest dataset upload (spooled to disk, not held in memory).
    pub max_dataset_bytes: u64,
    /// Largest function-call request body.
    pub max_request_bytes: u64,
    /// Largest response or output a function may return.
    pub max_response_bytes: u64,
    /// Most request headers before `431`.
    pub max_headers: usize,
    /// Largest request head before `431`.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive (plus 1 s per MiB).
    pub body_read_timeout: Duration,
    /// Memory all request bodies being received may hold together.
    pub max_inflight_body_bytes: u64,
    /// The budget anonymous callers of each public function share.
    pub anonymous: AnonymousLimits,
    /// How long in-flight requests may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Wasm stack per instance, in bytes.
    pub max_wasm_stack: usize,
    /// Host resources one instance may hold at once.
    pub max_guest_resources: usize,
    /// Instances alive at once in each engine.
    pub max_instances: u32,
    /// Guest stdout plus stderr kept for the log, per call.
    pub guest_output_bytes: usize,
    /// Whether guests may reach private and loopback addresses.
    pub allow_private_outbound: bool,
    /// A PostgreSQL URL, or `None` for SQLite in the data directory.
    pub database_url: Option<String>,
    /// Whether calls are metered into the ledger.
    pub metering: bool,
    /// How the ledger makes records durable.
    pub ledger: LedgerSettings,
    /// Versions kept per function, the active one included.
    pub max_versions_kept: usize,
    /// Components compiled at once.
    pub compile_slots: usize,
    /// How long one compile may take.
    pub compile_timeout: Duration,
    /// Quotas, plans and per-tenant settings.
    pub tenancy: TenancyConfig,
    /// Inference: backends, threads, model limits.
    pub nn: NnConfig,
    /// How this node runs training jobs.
    pub jobs: JobSettings,
    /// How this node watches what it runs.
    pub monitor: MonitorSettings,
}

impl Config {
    /// What the engine needs: where compiled artifacts go and the pool's sizes.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            compiled_dir: self.data_dir.join("compiled"),
            max_instances: self.max_instances,
            max_memory_mb: self.limits.max_memory_mb,
            max_wasm_stack: self.max_wasm_stack,
        }
    }

    /// What the registry needs: where components go, per-function limits, compiles.
    pub fn registry(&self) -> RegistrySettings {
        RegistrySettings {
            components_dir: self.data_dir.join("components"),
            limits: self.limits,
            queue_depth: self.queue_depth,
            queue_timeout: self.queue_timeout,
            anonymous: self.anonymous,
            max_versions_kept: self.max_versions_kept,
            compile_slots: self.compile_slots,
            compile_timeout: self.compile_timeout,
        }
    }

    /// What the invoker needs: the limits every instance runs under.
    pub fn invoke(&self) -> InvokeSettings {
        InvokeSettings {
            max_guest_resources: self.max_guest_resources,
            guest_output_bytes: self.guest_output_bytes,
            allow_private_outbound: self.allow_private_outbound,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Fills every field unset here from `base` (flags over file).
    #[must_use]
    pub fn or(self, base: Settings) -> Settings {
        macro_rules! merge {
            ($($field:ident),* $(,)?) => {
                Settings { $($field: self.$field.or(base.$field)),*, nn: self.nn.or(base.nn), jobs: self.jobs.or(base.jobs),
                    monitor: self.monitor.or(base.monitor) }
            };
        }
        merge!(
            listen,
            metrics_listen,
            data_dir,
            default_memory_mb,
            max_memory_mb,
            default_timeout_ms,
            max_timeout_ms,
            default_max_concurrency,
            max_concurrency_cap,
            queue_depth,
            queue_timeout_ms,
            max_deploy_bytes,
            max_dataset_bytes,
            max_request_bytes,
            max_response_bytes,
            max_headers,
            max_header_bytes,
            header_read_timeout_ms,
            body_read_timeout_ms,
            max_inflight_body_bytes,
            anonymous_requests_per_second,
            anonymous_max_concurrency,
            shutdown_grace_ms,
            max_wasm_stack_kb,
            max_guest_resources,
            max_instances,
            guest_output_bytes,
            allow_private_outbound,
            database_url,
            metering,
            ledger_sync,
            ledger_sync_interval_ms,
            max_versions_kept,
            compile_slots,
            compile_timeout_ms,
            quotas,
            plans,
            tenants,
        )
    }

    /// Applies the documented defaults and checks the result.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let limits = LimitDefaults {
            default_memory_mb: self.default_memory_mb.unwrap_or(128),
            max_memory_mb: self.max_memory_mb.unwrap_or(1024),
            default_timeout_ms: self.default_timeout_ms.unwrap_or(30_000),
            max_timeout_ms: self.max_timeout_ms.unwrap_or(300_000),
            default_max_concurrency: self.default_max_concurrency.unwrap_or(64),
            max_concurrency_cap: self.max_concurrency_cap.unwrap_or(1000),
        };
        if limits.default_memory_mb > limits.max_memory_mb
            || limits.default_timeout_ms > limits.max_timeout_ms
            || limits.default_max_concurrency > limits.max_concurrency_cap
        {
            bail!("a per-function default is larger than its cap (memory, timeout or concurrency)");
        }
        if limits.max_memory_mb == 0 || limits.default_timeout_ms == 0 {
            bail!("memory and timeout limits must be greater than zero");
        }
        let nn = self.nn.resolve(u64::from(limits.max_memory_mb) << 20)?;
        let max_deploy_bytes = self.max_deploy_bytes.unwrap_or(64 << 20);
        let max_request_bytes = self.max_request_bytes.unwrap_or(8 << 20);
        let max_inflight_body_bytes = self.max_inflight_body_bytes.unwrap_or(1 << 30);
        let largest_body = max_deploy_bytes.max(max_request_bytes).max(nn.max_model_bytes);
        if max_inflight_body_bytes < largest_body {
            bail!(
                "max_inflight_body_bytes ({max_inflight_body_bytes}) is smaller than the largest body limit ({largest_body}), so such a body could never be received"
            );
        }
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let monitor = self.monitor.resolve(self.allow_private_outbound.unwrap_or(false))?;
        Ok(Config {
            listen: self.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            metrics_listen: self.metrics_listen,
            data_dir: data_dir.clone(),
            limits,
            queue_depth: self.queue_depth.unwrap_or(256),
            queue_timeout: Duration::from_millis(self.queue_timeout_ms.unwrap_or(1000)),
            max_deploy_bytes,
            max_dataset_bytes: self.max_dataset_bytes.unwrap_or(1 << 30),
            max_request_bytes,
            max_response_bytes: self.max_response_bytes.unwrap_or(16 << 20),
            max_headers: self.max_headers.unwrap_or(64),
            max_header_bytes: self.max_header_bytes.unwrap_or(16 * 1024),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.unwrap_or(10_000)),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms.unwrap_or(30_000)),
            max_inflight_body_bytes,
            anonymous: AnonymousLimits {
                requests_per_second: self.anonymous_requests_per_second,
                max_concurrency: self.anonymous_max_concurrency,
            },
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(10_000)),
            max_wasm_stack: self.max_wasm_stack_kb.unwrap_or(512) * 1024,
            max_guest_resources: self.max_guest_resources.unwrap_or(10_000),
            max_instances: self.max_instances.unwrap_or(1000),
            guest_output_bytes: self.guest_output_bytes.unwrap_or(64 * 1024),
            allow_private_outbound: self.allow_private_outbound.unwrap_or(false),
            database_url: self.database_url,
            metering: self.metering.unwrap_or(true),
            ledger: LedgerSettings {
                sync: self.ledger_sync.unwrap_or_default(),
                sync_interval: Duration::from_millis(self.ledger_sync_interval_ms.unwrap_or(50).max(1)),
                journal_dir: crate::ledger::journal_dir(&data_dir),
            },
            max_versions_kept: self.max_versions_kept.unwrap_or(10).max(1),
            compile_slots: self.compile_slots.unwrap_or(2).max(1),
            compile_timeout: Duration::from_millis(self.compile_timeout_ms.unwrap_or(60_000).max(1)),
            tenancy: TenancyConfig {
                default_quotas: self.quotas.unwrap_or_default(),
                plans: self.plans.unwrap_or_default(),
                tenants: self.tenants.unwrap_or_default(),
            },
            jobs: JobSettings {
                workers: self
                    .jobs
                    .workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from) / 2)
                    .max(1),
                lease: Duration::from_millis(self.jobs.lease_ms.unwrap_or(15_000).max(100)),
                poll: Duration::from_millis(self.jobs.poll_ms.unwrap_or(1000).max(10)),
                log_bytes: 64 * 1024,
            },
            nn,
            monitor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Settings>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n");
        assert!(err.is_err_and(|e| e.to_string().contains("listen_port")));
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() -> anyhow::Result<()> {
        let file: Settings = toml::from_str("default_memory_mb = 64\nmax_headers = 10\n")?;
        let flags = Settings { max_headers: Some(20), ..Settings::default() };
        assert!(file.plans.is_none());
        let config = flags.or(file).resolve()?;
        assert_eq!(config.limits.default_memory_mb, 64);
        assert_eq!(config.max_headers, 20);
        assert_eq!(config.limits.default_timeout_ms, 30_000);
        Ok(())
    }

    #[test]
    fn plans_quotas_and_tenants_come_from_the_file() -> anyhow::Result<()> {
        let file: Settings = toml::from_str(
            "[quotas]\nrequests_per_second = 100\n[plans.default]\nper_request = 5\n\
             [plans.pro]\nper_cpu_ms = 2\n[tenants.acme]\nplan = \"pro\"\nquotas = { max_functions = 3 }\n",
        )?;
        let config = file.resolve()?;
        assert_eq!(config.tenancy.default_quotas.requests_per_second, Some(100));
        assert_eq!(config.tenancy.plans["default"].per_request, 5);
        assert_eq!(config.tenancy.tenants["acme"].quotas.max_functions, Some(3));
        assert!(toml::from_str::<Settings>("[plans.x]\nper_requests = 1\n").is_err(), "typos in plans are errors");
        Ok(())
    }

    #[test]
    fn nn_settings_come_from_their_table_and_flags() -> anyhow::Result<()> {
        let file: Settings = toml::from_str("[nn]\nthreads = 3\ndefault_backend = \"tract\"\n")?;
        let flags =
            Settings { nn: NnSettings { intra_op_threads: Some(2), ..NnSettings::default() }, ..Settings::default() };
        let config = flags.or(file).resolve()?;
        assert_eq!((config.nn.threads, config.nn.sessions_per_model, config.nn.intra_op_threads), (3, 3, 2));
        assert_eq!(config.nn.default_backend, Some(BackendKind::Tract));
        assert!(toml::from_str::<Settings>("[nn]\nthread = 3\n").is_err(), "typos in [nn] are errors");
        Ok(())
    }

    #[test]
    fn ledger_sync_defaults_to_interval_and_names_its_values() -> anyhow::Result<()> {
        let config = Settings::default().resolve()?;
        assert_eq!(
            (config.ledger.sync, config.ledger.sync_interval),
            (LedgerSync::Interval, Duration::from_millis(50))
        );
        let file: Settings = toml::from_str("ledger_sync = \"always\"\nledger_sync_interval_ms = 20\n")?;
        let config = file.resolve()?;
        assert_eq!((config.ledger.sync, config.ledger.sync_interval), (LedgerSync::Always, Duration::from_millis(20)));
        let err = toml::from_str::<Settings>("ledger_sync = \"bogus\"\n").err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("bogus") && err.contains("interval") && err.contains("always"), "{err}");
        Ok(())
    }

    #[test]
    fn default_above_cap_is_an_error() {
        let s = Settings { default_memory_mb: Some(2048), ..Settings::default() };
        assert!(s.resolve().is_err());
    }
}
