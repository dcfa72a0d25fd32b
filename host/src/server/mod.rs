//! The HTTP server: accept loop, connection limits and graceful shutdown.
//!
//! Like `wasmtime serve`: accept -> hyper `service_fn` -> router -> handler.
//! Every request gets an answer; errors become JSON responses in the router.

mod alerts_api;
pub mod body;
mod calls;
mod datasets_api;
pub mod error;
mod errors;
mod functions_api;
mod health;
mod jobs_api;
mod models_api;
mod monitor_api;
mod parse_errors;
mod routes;
mod tenants_api;
mod ui;
mod usage_api;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::Config;
use crate::datasets::DatasetStore;
use crate::db::Db;
use crate::engine::Runtime;
use crate::invoke::Invoker;
use crate::jobs::{JobDeps, Jobs};
use crate::ledger::Ledger;
use crate::monitor::Monitor;
use crate::nn::{Inference, ModelStore};
use crate::registry::Registry;
use crate::settle::Settler;
use crate::stats::StatsStore;
use crate::telemetry::{Metrics, RequestIds};
use crate::tenancy::Tenancy;

/// How often the epoch advances; guests yield and deadlines are checked this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// How often a node sharing a database picks up other nodes' deploys.
const REGISTRY_SYNC: Duration = Duration::from_secs(1);

/// Shared state of a running server: the capabilities it calls. Only
/// `server/` sees inside.
pub struct App {
    config: Config,
    registry: Arc<Registry>,
    /// Tenants' models and the inference service.
    models: Arc<ModelStore>,
    /// Runs every function call.
    invoker: Arc<Invoker>,
    /// Tenants' datasets, every version.
    datasets: Arc<DatasetStore>,
    /// Tenants' training jobs, and this node's trial workers.
    jobs: Arc<Jobs>,
    /// Statistics, detectors, alerts, guarded rollouts.
    monitor: Arc<Monitor>,
    /// Meters every call: ledger, budgets, metrics, call events.
    settler: Arc<Settler>,
    db: Db,
    auth: Auth,
    tenancy: Arc<Tenancy>,
    /// Reads request bodies under the size, time and memory limits.
    bodies: body::BodyReader,
    metrics: Metrics,
    request_ids: RequestIds,
    shutting_down: AtomicBool,
}

/// Starts the server and runs it until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = crate::telemetry::install_metrics()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let runtime = Arc::new(Runtime::new(&config.engine())?);
    runtime.start_epoch_ticker(EPOCH_TICK);
    let db = match &config.database_url {
        Some(url) => Db::connect(url).await?,
        None => Db::open_sqlite(&config.data_dir).await?,
    };
    let auth = Auth::bootstrap(db.clone(), &config.data_dir).await?;
    let monitor_settings = config.monitor.clone();
    let stats = Arc::new(StatsStore::new(monitor_settings.stats));
    let registry =
        Arc::new(Registry::load(db.clone(), Arc::clone(&runtime), config.registry(), Arc::clone(&stats)).await?);
    if config.database_url.is_some() {
        // Other nodes may deploy into the shared database.
        tokio::spawn(Arc::clone(&registry).follow(REGISTRY_SYNC));
    }
    let inference = Arc::new(Inference::start(config.nn.clone())?);
    let models = Arc::new(ModelStore::open(db.clone(), &config.data_dir, inference, Arc::clone(&stats)).await?);
    // A model broken while muon was down raises one alert at once.
    tokio::spawn(Arc::clone(&models).check_loadable());
    if db.is_shared() {
        // Other nodes may push and delete models in the shared database.
        tokio::spawn(Arc::clone(&models).follow(REGISTRY_SYNC));
    }
    let tenancy = Arc::new(Tenancy::new(db.clone(), config.tenancy.clone()));
    let ledger = if config.metering {
        Some(Ledger::start(db.clone(), config.ledger.clone()).await?)
    } else {
        // A run with metering on may have left records in the journal.
        crate::ledger::replay(&db, &config.ledger.journal_dir).await?;
        None
    };
    let settler = Arc::new(Settler::new(ledger, Arc::clone(&tenancy)));
    let invoker = Arc::new(Invoker::new(Arc::clone(&models), config.invoke()));
    let datasets = Arc::new(DatasetStore::open(db.clone(), &config.data_dir).await?);
    let jobs = Jobs::open(
        JobDeps {
            db: db.clone(),
            invoker: Arc::clone(&invoker),
            registry: Arc::clone(&registry),
            datasets: Arc::clone(&datasets),
            models: Arc::clone(&models),
            settler: Arc::clone(&settler),
            tenancy: Arc::clone(&tenancy),
        },
        config.jobs.clone(),
    )
    .await?;
    let monitor = Arc::new(Monitor::new(db.clone(), stats, Arc::clone(&registry), monitor_settings));
    monitor.watch_models(Arc::clone(&models), Arc::clone(&datasets));
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => {
            Some(TcpListener::bind(address).await.with_context(|| format!("cannot listen for metrics on {address}"))?)
        }
        None => None,
    };
    let shutdown = shutdown_signal();
    // Scripts and tests read this line to learn the port when --listen used port 0.
    println!("muon listening on http://{address}");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "muon serving");
    let bodies = body::BodyReader::new(config.max_inflight_body_bytes, config.body_read_timeout);
    let app = Arc::new(App {
        config,
        registry,
        models,
        invoker,
        datasets,
        jobs: Arc::clone(&jobs),
        monitor: Arc::clone(&monitor),
        settler,
        db: db.clone(),
        auth,
        tenancy,
        bodies,
        metrics,
        request_ids: RequestIds::new(),
        shutting_down: AtomicBool::new(false),
    });
    if let Some(listener) = metrics_listener {
        tracing::info!(address = %listener.local_addr()?, "serving /metrics without a key");
        tokio::spawn(serve_metrics(Arc::clone(&app), listener));
    }
    let scheduler = tokio::spawn(jobs.run());
    let sinks = monitor.start_sinks(format!("http://{address}"));
    let watcher = tokio::spawn(monitor.run());
    run(Arc::clone(&app), listener, shutdown).await;
    // Trials stop where they are; their leases run out and they resume
    // from their checkpoints at the next start (or on another node).
    scheduler.abort();
    watcher.abort();
    sinks.abort();
    if let Some(ledger) = app.settler.ledger() {
        match ledger.flush().await {
            Ok(()) => tracing::info!("usage ledger flushed"),
            Err(err) => tracing::error!(%err, "could not flush the usage ledger"),
        }
    }
    db.close().await;
    tracing::info!("muon stopped");
    Ok(())
}

async fn run(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // A head that hyper cannot parse is answered by hyper itself; the
    // connection is wrapped (`parse_errors`) so that answer gets a JSON body.
    http.timer(TokioTimer::new())
        .header_read_timeout(app.config.header_read_timeout)
        .max_headers(app.config.max_headers)
        .max_buf_size(app.config.max_header_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // The signal first: a connection accepted here after it would be
            // watched, and hyper closes a watched connection that has not
            // sent its request yet at once, without an answer.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Responses are written whole; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let service = service_fn(move |request| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(routes::handle(&app, request).await) }
                });
                let io = TokioIo::new(parse_errors::JsonParseErrors::new(stream));
                let connection = graceful.watch(http.serve_connection(io, service));
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                });
            }
        }
    }
    app.shutting_down.store(true, Ordering::Release);
    tracing::info!("shutting down: finishing in-flight requests");
    let finished = async {
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections finished"),
            () = tokio::time::sleep(app.config.shutdown_grace) => {
                tracing::warn!("grace period over; closing remaining connections");
            }
        }
    };
    drain(&app, &listener, http, finished).await;
}

/// Until `finished`, keeps accepting, but only to answer `503` (and `/readyz`
/// with `503`) and close: a load balancer sees the node going instead of
/// refused connections, and sends new work elsewhere.
async fn drain(app: &Arc<App>, listener: &TcpListener, mut http: http1::Builder, finished: impl Future<Output = ()>) {
    http.keep_alive(false);
    tokio::pin!(finished);
    loop {
        tokio::select! {
            () = &mut finished => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let app = Arc::clone(app);
                let service = service_fn(move |request| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(routes::handle_while_stopping(&app, &request)) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        }
    }
}

/// Serves `/metrics` alone, without a key, for a scraper on a private
/// network (`metrics_listen`).
async fn serve_metrics(app: Arc<App>, listener: TcpListener) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(app.config.header_read_timeout);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "accept failed on the metrics listener");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(routes::scrape(&app, &request)) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "metrics connection ended with an error");
            }
        });
    }
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when
/// this is called, not when the future is first polled, so a signal that
/// comes right after the "listening" line is not the default (fatal) one.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(err) => {
            tracing::error!(%err, ?kind, "cannot listen for a shutdown signal");
            None
        }
    });
    async move {
        let [terminate, interrupt] = streams;
        let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
            match stream {
                Some(mut stream) => drop(stream.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(terminate) => {}
            () = wait(interrupt) => {}
        }
    }
}

impl App {
    /// Whether the server accepts new work.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Acquire)
    }
}
