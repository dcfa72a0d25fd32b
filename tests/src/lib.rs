//! Test support: the real `muon` binary on loopback, real components from
//! `functions/`, real HTTP.
//!
//! Build first: `scripts/build-functions.sh` and `cargo build --release -p muon`
//! (`scripts/test.sh` does both).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Base64 as the API speaks it (tensors, inline models).
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// The workspace's target directory: `CARGO_TARGET_DIR`, else found from the
/// running test binary (`TARGET/release/deps/all-…`), so a binary built in one
/// checkout never looks for fixtures in another.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("release").is_dir() && dir.join("wasm32-wasip2").is_dir())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The `muon` binary under test.
pub fn muon_bin() -> PathBuf {
    std::env::var_os("MUON_BIN").map_or_else(|| target_dir().join("release/muon"), PathBuf::from)
}

/// A component built from `functions/NAME`.
pub fn component(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = target_dir().join("wasm32-wasip2/guest").join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).with_context(|| format!("{} is missing: run scripts/build-functions.sh first", path.display()))
}

/// A file of the repository (an example's model or data).
pub fn repo_file(path: &str) -> anyhow::Result<Vec<u8>> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read(&full).with_context(|| format!("cannot read {}", full.display()))
}

/// A model made by `scripts/make-models.sh` into `TARGET/models`.
pub fn generated_model(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = target_dir().join("models").join(name);
    std::fs::read(&path).with_context(|| format!("{} is missing: run scripts/make-models.sh first", path.display()))
}

/// The first image of `examples/digits/test-split.json` as the fp32 input
/// `x` (`[1, 64]`) of the digits model, in the API's tensor JSON.
pub fn digit_tensor() -> anyhow::Result<serde_json::Value> {
    let split: serde_json::Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let pixels: Vec<u8> = split["pixels"][0]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .flat_map(|v| (v as f32).to_le_bytes())
        .collect();
    Ok(serde_json::json!({ "name": "x", "type": "fp32", "dims": [1, 64], "data_base64": B64.encode(pixels) }))
}

/// Which database a server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// A fresh database on the PostgreSQL server of `MUON_TEST_POSTGRES_URL`.
    Postgres,
}

impl Backend {
    /// `--database-url` flags for this backend; each call makes a new
    /// PostgreSQL database, so tests never see each other's data.
    pub fn flags(self) -> anyhow::Result<Vec<String>> {
        match self {
            Backend::Sqlite => Ok(Vec::new()),
            Backend::Postgres => Ok(vec!["--database-url".to_owned(), fresh_postgres_database()?]),
        }
    }
}

/// Creates an empty database on the test PostgreSQL server and returns its URL.
pub fn fresh_postgres_database() -> anyhow::Result<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let server = std::env::var("MUON_TEST_POSTGRES_URL")
        .context("MUON_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL")?;
    // The clock too: process ids come back, and a long-lived test server
    // keeps the databases of earlier runs.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name =
        format!("muon_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    // From template0, which nobody connects to: CREATE DATABASE copies its
    // template and fails while another session uses it, as a parallel test's
    // CREATE DATABASE from the default template1 may.
    let created = (0..5).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        std::process::Command::new("psql")
            .args([server.as_str(), "-q", "-c", &format!("CREATE DATABASE {name} TEMPLATE template0")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if !created {
        bail!("psql could not create database {name} on {server}");
    }
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// A running `muon serve` with its own data directory.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data directory (kept for restarts).
    pub data_dir: PathBuf,
    _temp: Option<Arc<tempfile::TempDir>>,
    logs: Arc<Mutex<String>>,
    /// A client that sends the admin key (tenant `default`).
    pub http: reqwest::Client,
    /// The admin key the server wrote to `DATA_DIR/admin.key` (empty if none).
    pub admin_key: String,
}

impl Server {
    /// Starts a server on a fresh data directory with extra flags.
    pub async fn start(flags: &[&str]) -> anyhow::Result<Self> {
        let temp = Arc::new(tempfile::tempdir()?);
        let data_dir = temp.path().to_path_buf();
        Self::start_in(&data_dir, flags, Some(temp)).await
    }

    /// Starts a server on a fresh data directory and database of `backend`.
    pub async fn start_on(backend: Backend, flags: &[&str]) -> anyhow::Result<Self> {
        let mut all = backend.flags()?;
        all.extend(flags.iter().map(|f| (*f).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        Self::start(&all).await
    }

    /// Starts a server on `data_dir` (for restart tests).
    pub async fn start_in(
        data_dir: &Path,
        flags: &[&str],
        temp: Option<Arc<tempfile::TempDir>>,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(muon_bin())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", muon_bin().display()))?;
        let logs = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = Arc::clone(&logs);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(mut logs) = logs.lock() {
                        logs.push_str(&line);
                        logs.push('\n');
                    }
                }
            });
        }
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("muon listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("muon exited before listening")
        })
        .await
        .context("muon did not start within 60 s")?;
        let base = match base {
            Ok(base) => base,
            Err(err) => {
                // What the server said before it died is the diagnosis.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let said = logs.lock().map(|l| l.clone()).unwrap_or_default();
                bail!("{err}; its log:\n{said}");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // A node joining a shared database finds the admin key already made
        // (by another node) and writes no file: then the client has no key.
        let admin_key = std::fs::read_to_string(data_dir.join("admin.key")).unwrap_or_default().trim().to_owned();
        let http = client_with_key(Some(&admin_key).filter(|k| !k.is_empty()).map(String::as_str))?;
        Ok(Self { child, base, data_dir: data_dir.to_path_buf(), _temp: temp, logs, http, admin_key })
    }

    /// The temp dir handle, to restart on the same data directory.
    pub fn temp(&self) -> Option<Arc<tempfile::TempDir>> {
        self._temp.clone()
    }

    /// `host:port`, for raw TCP clients.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Deploys `functions/COMPONENT` as `name` with a query string (may be empty).
    pub async fn deploy(&self, name: &str, component_name: &str, query: &str) -> anyhow::Result<reqwest::Response> {
        self.deploy_as(&self.http, name, component_name, query).await
    }

    /// [`Server::deploy`] with `client`'s key, into its tenant.
    pub async fn deploy_as(
        &self,
        client: &reqwest::Client,
        name: &str,
        component_name: &str,
        query: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let bytes = component(component_name)?;
        let url = if query.is_empty() {
            self.url(&format!("/v1/functions/{name}"))
        } else {
            self.url(&format!("/v1/functions/{name}?{query}"))
        };
        Ok(client.put(url).header("content-type", "application/wasm").body(bytes).send().await?)
    }

    /// Deploys and checks for `201`.
    pub async fn deploy_ok(&self, name: &str, component_name: &str, query: &str) -> anyhow::Result<serde_json::Value> {
        self.deploy_ok_as(&self.http, name, component_name, query).await
    }

    /// [`Server::deploy_ok`] with `client`'s key, into its tenant.
    pub async fn deploy_ok_as(
        &self,
        client: &reqwest::Client,
        name: &str,
        component_name: &str,
        query: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let response = self.deploy_as(client, name, component_name, query).await?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("deploy of {name} answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Uploads a model with `client` (`query` may be empty).
    pub async fn push_model(
        &self,
        client: &reqwest::Client,
        name: &str,
        bytes: Vec<u8>,
        query: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(&format!("/v1/models/{name}?{query}"));
        Ok(client.put(url).header("content-type", "application/octet-stream").body(bytes).send().await?)
    }

    /// Uploads a model with the admin key and checks for `201`.
    pub async fn push_model_ok(&self, name: &str, bytes: Vec<u8>, query: &str) -> anyhow::Result<serde_json::Value> {
        let response = self.push_model(&self.http, name, bytes, query).await?;
        let status = response.status();
        let body = response.text().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("upload of model {name} answered {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// A client that sends `key`.
    pub fn with_key(&self, key: &str) -> anyhow::Result<reqwest::Client> {
        client_with_key(Some(key))
    }

    /// Creates tenant `name` with the admin key; returns its first key.
    pub async fn create_tenant(&self, name: &str) -> anyhow::Result<String> {
        let response =
            self.http.post(self.url("/v1/tenants")).json(&serde_json::json!({ "name": name })).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != reqwest::StatusCode::CREATED {
            bail!("creating tenant {name} answered {status}: {body}");
        }
        body["key"]["key"].as_str().map(str::to_owned).context("no key in the answer")
    }

    /// All usage records visible to `client` (following pages).
    pub async fn usage_records(
        &self,
        client: &reqwest::Client,
        tenant: Option<&str>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut records = Vec::new();
        let mut after = String::new();
        loop {
            let mut query = vec![("after", after.clone()), ("limit", "1000".to_owned())];
            if let Some(tenant) = tenant {
                query.push(("tenant", tenant.to_owned()));
            }
            let page: serde_json::Value = client
                .get(self.url("/v1/usage/records"))
                .query(&query)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let batch = page["records"].as_array().cloned().unwrap_or_default();
            if batch.is_empty() {
                return Ok(records);
            }
            after = page["next_after"].as_str().unwrap_or_default().to_owned();
            records.extend(batch);
        }
    }

    /// POSTs `body` as JSON to `path` with `client`; the answer must be
    /// `200` with JSON, which is returned.
    pub async fn post_json(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let response = client.post(self.url(path)).json(body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status == reqwest::StatusCode::OK, "POST {path} answered {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// `GET /fn/default/NAME{rest}`.
    pub async fn get_fn(&self, name: &str, rest: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.http.get(self.url(&format!("/fn/default/{name}{rest}"))).send().await?)
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The value of a metric line that starts with `prefix` (name and labels).
    pub async fn metric(&self, prefix: &str) -> anyhow::Result<Option<f64>> {
        let text = self.http.get(self.url("/metrics")).send().await?.text().await?;
        Ok(text
            .lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok()))
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server has exited")
    }

    /// The server's resident memory now and at its peak, from `/proc`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/PID/status"))
        };
        Ok(Memory { rss_bytes: field("VmRSS:")? * 1024, peak_bytes: field("VmHWM:")? * 1024 })
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status =
            std::process::Command::new("kill").arg(format!("-{signal}")).arg(self.pid()?.to_string()).status()?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let status =
            tokio::time::timeout(limit, self.child.wait()).await.context("the server did not exit in time")??;
        Ok(status.code())
    }

    /// Stops the server with SIGTERM and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<Option<i32>> {
        self.signal("TERM")?;
        self.wait(Duration::from_secs(30)).await
    }
}

/// A process's resident memory, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_bytes: u64,
    /// The most ever resident (`VmHWM`).
    pub peak_bytes: u64,
}

/// An HTTP client that sends `key` as a bearer token (or no key at all).
pub fn client_with_key(key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = key {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse()?);
    }
    Ok(reqwest::Client::builder().default_headers(headers).timeout(Duration::from_secs(120)).build()?)
}

/// The usage record of the call that answered with `request_id`, once settled.
pub async fn record_of(server: &Server, request_id: &str) -> anyhow::Result<serde_json::Value> {
    for _ in 0..200 {
        let records = server.usage_records(&server.http, None).await?;
        if let Some(record) = records.into_iter().find(|r| r["request_id"] == request_id) {
            return Ok(record);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no usage record for {request_id}")
}

/// Parses a JSON error body and returns `(code, message)`.
pub async fn error_of(response: reqwest::Response) -> anyhow::Result<(u16, String, String)> {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.context("error body is not JSON")?;
    let code = body["error"]["code"].as_str().context("no error.code")?.to_owned();
    let message = body["error"]["message"].as_str().context("no error.message")?.to_owned();
    Ok((status, code, message))
}
