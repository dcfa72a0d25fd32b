//! The command line: `muon serve` and the client commands that speak the
//! HTTP API (`--server` or `MUON_SERVER`). Output is for people unless
//! `--json` is given; failures exit non-zero with a one-line reason.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    BatchSettings, Deleted, DeployQuery, ErrorBody, FunctionDetail, FunctionList, FunctionVersion, GroupBy, IssuedKey,
    Model, ModelList, ModelQuery, NewKey, NewTenant, Revoked, TenantCreated, TenantList, UsageGroups, UsageQuery,
};
use crate::config::Settings;

mod alerts;
mod datasets;
mod jobs;

/// muon: a serverless WebAssembly function host for AI workloads.
#[derive(Debug, Parser)]
#[command(name = "muon", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML file with the same settings as the flags; flags win.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Deploy a component as function NAME (a new version if it exists).
    Deploy {
        name: String,
        /// The component (.wasm built for wasm32-wasip2).
        file: PathBuf,
        #[arg(long)]
        memory_mb: Option<u32>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// Callable without an API key.
        #[arg(long)]
        public: bool,
        /// Hosts the function may call over outbound HTTP, comma-separated.
        #[arg(long)]
        allowed_hosts: Option<String>,
        /// Models the function may load by name, comma-separated [default: all of the tenant's].
        #[arg(long)]
        models: Option<String>,
        /// How the new version takes over: `watch`, `canary` or `direct` [default: watch].
        #[arg(long)]
        rollout: Option<String>,
        /// The canary's share of the calls, 1 to 99 [default: 10].
        #[arg(long)]
        canary_percent: Option<u64>,
        /// Seconds the canary runs before it is promoted [default: 120].
        #[arg(long)]
        canary_for_s: Option<u64>,
        /// Seconds a watched deploy is watched; 0: unwatched [default: the server's].
        #[arg(long)]
        watch_s: Option<u64>,
        /// Open a circuit breaker after this many host-side failures in a row [default: no breaker].
        #[arg(long)]
        breaker_failures: Option<u64>,
        /// How long an open breaker refuses calls, in seconds [default: 30].
        #[arg(long)]
        breaker_cooldown_s: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Call function NAME and print its response body.
    Invoke {
        name: String,
        /// Request body: `@FILE`, `-` for stdin, or the text itself.
        #[arg(long)]
        data: Option<String>,
        /// Path below the function's route, for HTTP functions.
        #[arg(long, default_value = "/")]
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List deployed functions.
    Functions {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make the previous version of NAME active again.
    Rollback {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete function NAME and all its versions.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List models, or push and delete them.
    Models {
        #[command(subcommand)]
        command: Option<ModelsCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List datasets, or push, show and delete them.
    Datasets {
        #[command(subcommand)]
        command: Option<datasets::DatasetsCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List training jobs, or run, show, cancel, delete them and print their reports and logs.
    Jobs {
        #[command(subcommand)]
        command: Option<jobs::JobsCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the tenant's alerts, or manage the sinks they are posted to.
    Alerts {
        /// Only alerts in this state: `firing` or `resolved`.
        #[arg(long)]
        state: Option<String>,
        #[command(subcommand)]
        command: Option<alerts::AlertsCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the tenant's audit log: deploys, rollbacks, alerts, job state changes...
    Events {
        /// Only events of this kind (`job_state`, `alert_firing`, `deploy`...).
        #[arg(long)]
        kind: Option<String>,
        /// Only events after this id.
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
        /// Keep printing new events as they come (every second) until interrupted.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage tenants (admin key).
    Tenants {
        #[command(subcommand)]
        command: Option<TenantsCommand>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Operator commands that work on the database directly, without the server.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Usage totals from the ledger.
    Usage {
        /// Group by `function`, `day` or `hour`.
        #[arg(long, default_value = "function")]
        by: String,
        /// From (Unix ms or YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// To, exclusive (Unix ms or YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Only this function.
        #[arg(long)]
        function: Option<String>,
        /// Another tenant's usage (admin key).
        #[arg(long)]
        tenant: Option<String>,
        /// Print CSV instead of a table.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Upload FILE (ONNX) as model NAME, replacing what NAME held.
    Push {
        name: String,
        file: PathBuf,
        /// `tract` or `onnxruntime` [default: the server's].
        #[arg(long)]
        backend: Option<String>,
        /// `cpu` or `gpu` [default: cpu].
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        batching: BatchArgs,
    },
    /// Set how model NAME's concurrent computes are merged (its next version, the same bytes).
    Batching {
        name: String,
        #[command(flatten)]
        batching: BatchArgs,
    },
    /// Delete model NAME.
    Delete { name: String },
}

/// Dynamic batching of a model's computes.
#[derive(Debug, clap::Args)]
struct BatchArgs {
    /// Merge concurrent computes into batches of at most this many rows [default: 0, off].
    #[arg(long)]
    batch_max: Option<u32>,
    /// How long a batch waits for more requests, in microseconds [default: 1000].
    #[arg(long)]
    batch_wait_us: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Create tenant NAME and print its first key (shown once).
    Create { name: String },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue a new admin key and write it to DATA_DIR/admin.key: the recovery
    /// when the admin key is lost or revoked. Run it on the machine that holds
    /// the data directory (the server may be running); other admin keys stay
    /// live, so revoke a leaked one with the new key.
    ResetKey {
        /// The server's data directory (its database, unless --database-url).
        #[arg(long, env = "MUON_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The server's PostgreSQL URL, when it uses one.
        #[arg(long, env = "MUON_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Issue a key for a tenant (your own by default) and print it (shown once).
    Create {
        #[arg(long)]
        tenant: Option<String>,
        /// An admin key (needs an admin key).
        #[arg(long)]
        admin: bool,
    },
    /// Revoke key ID.
    Revoke { id: String },
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The muon server to talk to.
    #[arg(long, global = true, env = "MUON_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key [default: the server's admin key from DATA_DIR/admin.key on this machine].
    #[arg(long, global = true, env = "MUON_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Where to look for admin.key when no key is given.
    #[arg(long, global = true, env = "MUON_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Print the server's JSON answer (the API's types) instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    /// A client that sends the API key with every request.
    fn http(&self) -> anyhow::Result<reqwest::Client> {
        let key = match &self.api_key {
            Some(key) => Some(key.trim().to_owned()),
            None => std::fs::read_to_string(self.data_dir.join("admin.key")).ok().map(|k| k.trim().to_owned()),
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key has characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder().default_headers(headers).build()?)
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, settings } => serve(config, *settings).await,
            Command::Admin { command: AdminCommand::ResetKey { data_dir, database_url } } => {
                reset_admin_key(&data_dir, database_url.as_deref()).await
            }
            command => client_command(command).await,
        }
    })
}

async fn serve(config_file: Option<PathBuf>, flags: Settings) -> anyhow::Result<()> {
    crate::telemetry::init_logging();
    let file = match config_file {
        Some(path) => Settings::from_file(&path)?,
        None => Settings::default(),
    };
    crate::server::serve(flags.or(file).resolve()?).await
}

async fn reset_admin_key(data_dir: &std::path::Path, database_url: Option<&str>) -> anyhow::Result<()> {
    let db = match database_url {
        Some(url) => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
            crate::db::Db::connect(url).await?
        }
        None => {
            // Opening a missing file would create an empty database and a key
            // that no server knows: a mistyped --data-dir must fail instead.
            let file = data_dir.join("muon.db");
            if !file.is_file() {
                bail!("no database at {}; give the server's --data-dir, or --database-url", file.display());
            }
            crate::db::Db::open_sqlite(data_dir).await?
        }
    };
    let issued = crate::auth::reset_admin_key(&db, data_dir).await;
    db.close().await;
    let issued = issued?;
    println!("new admin key {} written to {}", issued.id, data_dir.join("admin.key").display());
    Ok(())
}

async fn client_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } | Command::Admin { .. } => bail!("not a client command"),
        Command::Deploy {
            name,
            file,
            memory_mb,
            timeout_ms,
            max_concurrency,
            public,
            allowed_hosts,
            models,
            rollout,
            canary_percent,
            canary_for_s,
            watch_s,
            breaker_failures,
            breaker_cooldown_s,
            client,
        } => {
            let http = client.http()?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let query = DeployQuery {
                memory_mb: memory_mb.map(u64::from),
                timeout_ms,
                max_concurrency: max_concurrency.map(u64::from),
                public: public.then_some(true),
                allowed_hosts,
                models,
                rollout,
                canary_percent,
                canary_for_s,
                watch_s,
                breaker_failures,
                breaker_cooldown_s,
            };
            let request = http
                .put(format!("{}/v1/functions/{name}", client.server))
                .query(&query)
                .header("content-type", "application/wasm")
                .body(bytes);
            let out: FunctionVersion = send(request).await?;
            print_or(&client, &out, || {
                format!(
                    "deployed {} version {} ({}, digest {})",
                    out.name,
                    out.version,
                    out.kind.as_str(),
                    short_digest(&out.digest)
                )
            })
        }
        Command::Invoke { name, data, path, client } => invoke(&client.http()?, &client, &name, data, &path).await,
        Command::Functions { client } => {
            let out: FunctionList = send(client.http()?.get(format!("{}/v1/functions", client.server))).await?;
            print_or(&client, &out, || {
                let mut lines =
                    vec![format!("{:<24} {:>7}  {:<14} {:>9} {:>10}", "NAME", "VERSION", "KIND", "MEMORY", "TIMEOUT")];
                for f in &out.functions {
                    lines.push(format!(
                        "{:<24} {:>7}  {:<14} {:>6}MiB {:>8}ms",
                        f.name,
                        f.version,
                        f.kind.as_str(),
                        f.limits.memory_mb,
                        f.limits.timeout_ms,
                    ));
                }
                lines.join("\n")
            })
        }
        Command::Rollback { name, client } => {
            let out: FunctionVersion =
                send(client.http()?.post(format!("{}/v1/functions/{name}/rollback", client.server))).await?;
            print_or(&client, &out, || format!("{name} is now at version {}", out.version))
        }
        Command::Delete { name, client } => {
            let out: Deleted = send(client.http()?.delete(format!("{}/v1/functions/{name}", client.server))).await?;
            print_or(&client, &out, || format!("deleted {}", out.deleted))
        }
        Command::Models { command, client } => models(command, &client).await,
        Command::Datasets { command, client } => datasets::run(command, &client).await,
        Command::Jobs { command, client } => jobs::run(command, &client).await,
        Command::Alerts { state, command, client } => alerts::alerts(command, state.as_deref(), &client).await,
        Command::Events { kind, after, follow, client } => alerts::events(kind, after, follow, &client).await,
        Command::Tenants { command, client } => tenants(command, &client).await,
        Command::Keys { command, client } => keys(command, &client).await,
        Command::Usage { by, from, to, function, tenant, csv, client } => {
            let query = UsageQuery { from, to, function, group_by: Some(group_by(&by)?), tenant };
            let out: UsageGroups =
                send(client.http()?.get(format!("{}/v1/usage", client.server)).query(&query)).await?;
            print_or(&client, &out, || usage_table(&out, csv))
        }
    }
}

async fn models(command: Option<ModelsCommand>, client: &ClientArgs) -> anyhow::Result<()> {
    let http = client.http()?;
    match command {
        Some(ModelsCommand::Push { name, file, backend, target, batching }) => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let query = ModelQuery {
                encoding: None,
                backend: backend.as_deref().map(model_backend).transpose()?,
                target: target.as_deref().map(model_target).transpose()?,
                batch_max: batching.batch_max,
                batch_wait_us: batching.batch_wait_us,
            };
            let request = http
                .put(format!("{}/v1/models/{name}", client.server))
                .query(&query)
                .header("content-type", "application/octet-stream")
                .body(bytes);
            let out: Model = send(request).await?;
            print_or(client, &out, || {
                let specs = |specs: &[crate::api::TensorSpec]| {
                    specs
                        .iter()
                        .map(|t| format!("{} {} {}", t.name, t.ty.as_str(), t.shape_text()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "pushed model {} ({} bytes, {} on {}, digest {})\n  inputs:  {}\n  outputs: {}",
                    out.name,
                    out.size,
                    out.backend.as_str(),
                    out.target.as_str(),
                    short_digest(&out.digest),
                    specs(&out.inputs),
                    specs(&out.outputs),
                )
            })
        }
        Some(ModelsCommand::Batching { name, batching }) => {
            let settings =
                BatchSettings { batch_max: batching.batch_max.unwrap_or(0), batch_wait_us: batching.batch_wait_us };
            let request = http.put(format!("{}/v1/models/{name}/batching", client.server)).json(&settings);
            let out: Model = send(request).await?;
            print_or(client, &out, || match &out.batching {
                Some(b) => format!(
                    "model {} version {}: batches of at most {} rows, waiting {} µs{}",
                    out.name,
                    out.version,
                    b.batch_max,
                    b.batch_wait_us,
                    if b.batchable { "" } else { " (its first dimension is not a batch dimension: never batched)" }
                ),
                None => format!("model {} version {}: not batched", out.name, out.version),
            })
        }
        Some(ModelsCommand::Delete { name }) => {
            let out: Deleted = send(http.delete(format!("{}/v1/models/{name}", client.server))).await?;
            print_or(client, &out, || format!("deleted model {}", out.deleted))
        }
        None => {
            let out: ModelList = send(http.get(format!("{}/v1/models", client.server))).await?;
            print_or(client, &out, || {
                let mut lines =
                    vec![format!("{:<24} {:>12}  {:<12} {:<4} {}", "NAME", "BYTES", "BACKEND", "ON", "DIGEST")];
                for m in &out.models {
                    lines.push(format!(
                        "{:<24} {:>12}  {:<12} {:<4} {}",
                        m.name,
                        m.size,
                        m.backend.as_str(),
                        m.target.as_str(),
                        short_digest(&m.digest),
                    ));
                }
                lines.join("\n")
            })
        }
    }
}

async fn tenants(command: Option<TenantsCommand>, client: &ClientArgs) -> anyhow::Result<()> {
    let http = client.http()?;
    match command {
        Some(TenantsCommand::Create { name }) => {
            let request = http.post(format!("{}/v1/tenants", client.server)).json(&NewTenant { name, quotas: None });
            let out: TenantCreated = send(request).await?;
            print_or(client, &out, || {
                format!("created tenant {}\nkey {} (shown once): {}", out.tenant, out.key.id, out.key.key)
            })
        }
        None => {
            let out: TenantList = send(http.get(format!("{}/v1/tenants", client.server))).await?;
            print_or(client, &out, || out.tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join("\n"))
        }
    }
}

async fn keys(command: KeysCommand, client: &ClientArgs) -> anyhow::Result<()> {
    let http = client.http()?;
    match command {
        KeysCommand::Create { tenant, admin } => {
            let tenant = tenant.unwrap_or_else(|| crate::names::DEFAULT_TENANT.to_owned());
            let request = http.post(format!("{}/v1/tenants/{tenant}/keys", client.server)).json(&NewKey { admin });
            let out: IssuedKey = send(request).await?;
            print_or(client, &out, || format!("key {} for {} (shown once): {}", out.id, out.tenant, out.key))
        }
        KeysCommand::Revoke { id } => {
            let out: Revoked = send(http.delete(format!("{}/v1/keys/{id}", client.server))).await?;
            print_or(client, &out, || format!("revoked {}", out.revoked))
        }
    }
}

fn usage_table(out: &UsageGroups, csv: bool) -> String {
    let columns =
        ["group", "requests", "cpu_ms", "wall_ms", "gb_seconds", "compute_ms", "bytes_in", "bytes_out", "cost_micros"];
    let rows: Vec<[String; 9]> = out
        .groups
        .iter()
        .map(|g| {
            [
                g.group.clone(),
                g.requests.to_string(),
                g.cpu_ms.to_string(),
                g.wall_ms.to_string(),
                g.gb_seconds.to_string(),
                g.compute_ms.to_string(),
                g.bytes_in.to_string(),
                g.bytes_out.to_string(),
                g.cost_micros.to_string(),
            ]
        })
        .collect();
    let mut lines = Vec::new();
    if csv {
        lines.push(columns.join(","));
        lines.extend(rows.iter().map(|r| r.join(",")));
    } else {
        lines.push(columns.iter().map(|c| format!("{c:>14}")).collect::<Vec<_>>().join(""));
        lines.extend(rows.iter().map(|r| r.iter().map(|v| format!("{v:>14}")).collect::<Vec<_>>().join("")));
    }
    lines.join("\n")
}

fn group_by(by: &str) -> anyhow::Result<GroupBy> {
    [GroupBy::Function, GroupBy::Day, GroupBy::Hour]
        .into_iter()
        .find(|g| g.as_str() == by)
        .with_context(|| format!("--by must be function, day or hour, got `{by}`"))
}

fn model_backend(name: &str) -> anyhow::Result<crate::api::Backend> {
    match name {
        "tract" => Ok(crate::api::Backend::Tract),
        "onnxruntime" | "ort" => Ok(crate::api::Backend::OnnxRuntime),
        other => bail!("--backend must be tract or onnxruntime, got `{other}`"),
    }
}

fn model_target(name: &str) -> anyhow::Result<crate::api::Target> {
    match name {
        "cpu" => Ok(crate::api::Target::Cpu),
        "gpu" => Ok(crate::api::Target::Gpu),
        other => bail!("--target must be cpu or gpu, got `{other}`"),
    }
}

/// The first 12 hex digits of a digest, enough to tell versions apart.
fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

async fn invoke(
    http: &reqwest::Client,
    client: &ClientArgs,
    name: &str,
    data: Option<String>,
    path: &str,
) -> anyhow::Result<()> {
    let info: FunctionDetail = send(http.get(format!("{}/v1/functions/{name}", client.server))).await?;
    let body = match data.as_deref() {
        None => Vec::new(),
        Some("-") => {
            let mut buffer = Vec::new();
            std::io::stdin().read_to_end(&mut buffer).context("cannot read stdin")?;
            buffer
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
            None => arg.as_bytes().to_vec(),
        },
    };
    let request = if info.active.kind.is_typed() {
        http.post(format!("{}/v1/functions/{name}/invoke", client.server)).body(body)
    } else {
        let url = format!("{}/fn/{}/{name}{}", client.server, info.active.tenant, normalize_path(path));
        if data.is_some() { http.post(url).body(body) } else { http.get(url) }
    };
    let response = request.send().await.with_context(|| format!("cannot reach {}", client.server))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!("{}", failure_line(status, &bytes));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout();
    stdout.write_all(&bytes)?;
    if !bytes.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

fn normalize_path(path: &str) -> String {
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

/// Sends `request` and reads the answer as `T`; a failure is one line.
async fn send<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> anyhow::Result<T> {
    let bytes = send_raw(request).await?;
    serde_json::from_slice(&bytes).context("the server's answer is not what this muon expects (a different version?)")
}

/// Sends `request` and answers the body of a success; a failure is one line.
async fn send_raw(request: reqwest::RequestBuilder) -> anyhow::Result<bytes::Bytes> {
    let response = request.send().await.context("cannot reach the muon server (is it running? see --server)")?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!("{}", failure_line(status, &bytes));
    }
    Ok(bytes)
}

/// `HTTP 404 not_found: function `x` was not found`, from a JSON error body when there is one.
fn failure_line(status: reqwest::StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => format!("HTTP {} {}: {}", status.as_u16(), error.code, error.message),
        Err(_) => format!("HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(body).trim()),
    }
}

/// Prints `answer` as JSON with `--json`, else the summary for people.
fn print_or(client: &ClientArgs, answer: &impl Serialize, human: impl FnOnce() -> String) -> anyhow::Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        println!("{}", human());
    }
    Ok(())
}
