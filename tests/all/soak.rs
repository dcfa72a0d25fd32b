//! Issue 9's soak: one tenant's hostile clients all at once against a
//! bystander tenant, for a bounded time. The bystander's latency and the
//! server's memory are what a tenant of a shared host is promised.
//!
//! It runs alone (`.config/nextest.toml`), so other tests' servers do not
//! share its two cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use muon_tests::{B64, Server, component, generated_model};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the hostile clients run.
const SOAK: Duration = Duration::from_secs(20);
/// Bystander requests measured when the host is quiet.
const QUIET_SAMPLES: usize = 2000;
/// Slow-body connections kept open by the attacker.
const SLOW_CONNECTIONS: usize = 200;
/// The most the server's resident memory may grow above its quiet level.
/// Measured: about 365 MiB, most of it the 114 MiB typed outputs (held twice
/// in the guest's memory and once when lifted).
const MEMORY_BOUND_MIB: u64 = 512;
/// How many times its quiet p99 the bystander's p99 may reach under attack:
/// the 5. Measured on the 2-core machine with the ledger journal
/// (session 9, docs/BENCHMARKS.md): quiet 0.28-0.43 ms, under attack
/// 0.99-1.06 ms, so 2.0-2.1x of the floor below. Before the journal, when
/// every request synced the ledger, the same attack gave 3.7x to 7.6x.
const LATENCY_BOUND: u32 = 5;
/// The quiet p99 the bound is multiplied from, at least, so that a quiet
/// run that happens to be fast does not make the bound tighter than the
/// attackers' share of two cores allows.
const QUIET_FLOOR: Duration = Duration::from_micros(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_a_bystander_keeps_its_latency_while_another_tenant_attacks() -> anyhow::Result<()> {
    let server = Arc::new(Server::start(&["--body-read-timeout-ms", "3000"]).await?);
    let bystander_key = server.create_tenant("bystander").await?;
    let bystander = server.with_key(&bystander_key)?;
    let mallory = server.with_key(&server.create_tenant("mallory").await?)?;
    // The attacker's tenant has the quotas a shared host gives a tenant.
    // On this two-core host that is one core's worth of calls at a time.
    let quotas = json!({
        "max_concurrent_requests": 1, "requests_per_second": 50, "api_requests_per_second": 20, "max_functions": 5
    });
    server.http.put(server.url("/v1/tenants/mallory/quotas")).json(&quotas).send().await?.error_for_status()?;
    server.deploy_ok_as(&bystander, "hello", "hello", "").await?;
    server.deploy_ok_as(&mallory, "open", "hello", "public=true").await?;
    server.deploy_ok_as(&mallory, "linear", "train-linear", "memory_mb=512").await?;
    server.deploy_ok_as(&mallory, "forge", "fixture-forge", "").await?;
    server.deploy_ok_as(&mallory, "probe", "fixture-nn-probe", "memory_mb=64").await?;
    let range = mallory
        .put(server.url("/v1/models/sized"))
        .header("content-type", "application/octet-stream")
        .body(generated_model("range.onnx")?)
        .send()
        .await?;
    anyhow::ensure!(range.status() == 201, "range.onnx: {}", range.text().await?);

    let hello = server.url("/fn/bystander/hello");
    let quiet = measure_apart(&bystander_key, &hello, Sample::Count(QUIET_SAMPLES)).await?;
    let quiet_p99 = percentile(&quiet, 0.99);
    let quiet_memory = server.memory()?;

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    let address = server.address().to_owned();
    // SOAK_ONLY=slow,forge,typed,models,deploys runs some attackers only (to
    // see which one costs the bystander what).
    let only = std::env::var("SOAK_ONLY").unwrap_or_default();
    let on = |name: &str| only.is_empty() || only.split(',').any(|n| n == name);
    for _ in 0..SLOW_CONNECTIONS {
        if !on("slow") {
            break;
        }
        attackers.spawn(slow_body(address.clone(), Arc::clone(&stop)));
    }
    if on("forge") {
        attackers.spawn(forged_headers(Arc::clone(&server), mallory.clone(), Arc::clone(&stop)));
    }
    if on("typed") {
        attackers.spawn(huge_typed_outputs(Arc::clone(&server), mallory.clone(), Arc::clone(&stop)));
    }
    if on("models") {
        attackers.spawn(hostile_models(Arc::clone(&server), mallory.clone(), Arc::clone(&stop)));
    }
    for worker in 0..4 {
        if !on("deploys") {
            break;
        }
        attackers.spawn(parallel_deploys(
            Arc::clone(&server),
            mallory.clone(),
            worker,
            Arc::clone(&stop),
            Arc::clone(&refused),
        ));
    }
    // Let the attack build up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = measure_apart(&bystander_key, &hello, Sample::For(SOAK)).await?;
    let peak_memory = server.memory()?;
    stop.store(true, Ordering::Release);
    while let Some(joined) = attackers.join_next().await {
        joined??;
    }

    let loaded_p99 = percentile(&loaded, 0.99);
    let grown_mib = peak_memory.peak_bytes.saturating_sub(quiet_memory.rss_bytes) >> 20;
    eprintln!(
        "soak: bystander p99 quiet {quiet_p99:?} ({} samples), under attack {loaded_p99:?} ({} samples); \
         server memory grew {grown_mib} MiB at peak; {} deploys refused by quota",
        quiet.len(),
        loaded.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(loaded.len() > 100, "the bystander got only {} answers in {SOAK:?}", loaded.len());
    assert!(
        loaded_p99 < quiet_p99.max(QUIET_FLOOR) * LATENCY_BOUND,
        "bystander p99 went from {quiet_p99:?} to {loaded_p99:?} under attack"
    );
    assert!(grown_mib < MEMORY_BOUND_MIB, "server memory grew by {grown_mib} MiB");
    let functions: serde_json::Value = mallory.get(server.url("/v1/functions")).send().await?.json().await?;
    let count = functions["functions"].as_array().map_or(0, Vec::len);
    assert!(count <= 5, "mallory has {count} functions against a quota of 5");
    Ok(())
}

enum Sample {
    Count(usize),
    For(Duration),
}

/// [`latencies`] on a thread and runtime of its own, so the attackers' tasks
/// in this process do not delay the bystander's client.
async fn measure_apart(key: &str, url: &str, sample: Sample) -> anyhow::Result<Vec<Duration>> {
    let (key, url) = (key.to_owned(), url.to_owned());
    let thread = std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async { latencies(&muon_tests::client_with_key(Some(&key))?, &url, sample).await })
    });
    tokio::task::spawn_blocking(move || thread.join().map_err(|_| anyhow::anyhow!("the bystander thread panicked"))?)
        .await?
}

/// Latencies of sequential `GET url` calls, each checked for its answer.
async fn latencies(client: &reqwest::Client, url: &str, sample: Sample) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    let mut out = Vec::new();
    loop {
        match sample {
            Sample::Count(n) if out.len() >= n => return Ok(out),
            Sample::For(limit) if started.elapsed() >= limit => return Ok(out),
            _ => {}
        }
        let sent = Instant::now();
        let response = client.get(url).send().await?;
        let status = response.status();
        let body = response.text().await?;
        out.push(sent.elapsed());
        anyhow::ensure!(status == 200 && body == "hello, world!\n", "bystander got {status}: {body}");
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// One anonymous connection that drips a declared 1 MB body a byte at a
/// time, reconnecting whenever the server closes it.
async fn slow_body(address: String, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    while !stop.load(Ordering::Acquire) {
        let Ok(mut stream) = TcpStream::connect(&address).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!("POST /fn/mallory/open HTTP/1.1\r\nhost: {address}\r\ncontent-length: 1000000\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        while !stop.load(Ordering::Acquire) && stream.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0u8; 512];
            // An answer (408) means the server gave up on this body.
            if matches!(tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await, Ok(Ok(_))) {
                break;
            }
        }
    }
    Ok(())
}

/// Responses that try to frame themselves: each must come back as what the
/// host framed, never as bytes spliced into the next answer.
async fn forged_headers(server: Arc<Server>, client: reqwest::Client, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let forged = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";
    let spec = json!({
        "status": 200,
        "headers": [["content-length", "0"], ["transfer-encoding", "chunked"], ["connection", "upgrade"], ["x-muon-request-id", "forged"]],
        "body": forged,
    });
    while !stop.load(Ordering::Acquire) {
        let response = client.post(server.url("/fn/mallory/forge")).json(&spec).send().await?;
        let status = response.status();
        if status == 200 {
            let id = response.headers().get("x-muon-request-id").cloned();
            let body = response.text().await?;
            anyhow::ensure!(body == forged, "a forged response was cut to {body:?}");
            anyhow::ensure!(id.is_some_and(|id| id != "forged"), "the request id was spoofed");
        } else {
            anyhow::ensure!(status == 500 || status == 429, "forge answered {status}");
        }
    }
    Ok(())
}

/// Typed outputs far over the response cap.
async fn huge_typed_outputs(server: Arc<Server>, client: reqwest::Client, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let body = json!({ "op": "init", "config": { "features": 30_000_000 } });
    while !stop.load(Ordering::Acquire) {
        let response = client.post(server.url("/v1/functions/linear/invoke")).json(&body).send().await?;
        let status = response.status();
        anyhow::ensure!(status == 500 || status == 429, "a 114 MiB output answered {status}");
    }
    Ok(())
}

/// Models that fold a 1 GiB constant at upload, and a guest-chosen 3 GiB
/// tensor at compute.
async fn hostile_models(server: Arc<Server>, client: reqwest::Client, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let bomb = generated_model("fold-constant.onnx")?;
    let n = B64.encode((1i64 << 28).to_le_bytes());
    let huge = json!({ "model": "sized", "inputs": [{ "name": "n", "type": "i64", "dims": [], "data_base64": n }] });
    while !stop.load(Ordering::Acquire) {
        let upload = client
            .put(server.url("/v1/models/bomb"))
            .header("content-type", "application/octet-stream")
            .body(bomb.clone())
            .send()
            .await?;
        anyhow::ensure!(
            upload.status() == 400 || upload.status() == 429,
            "a folding bomb answered {}",
            upload.status()
        );
        let response = client.post(server.url("/fn/mallory/probe")).json(&huge).send().await?;
        let status = response.status();
        let out: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::ensure!(status == 429 || out["code"] == "too-large", "a 3 GiB tensor answered {status}: {out}");
    }
    Ok(())
}

/// Deploys under the attacker's function quota, in parallel with the others.
async fn parallel_deploys(
    server: Arc<Server>,
    client: reqwest::Client,
    worker: usize,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let bytes = component("http-hello")?;
    let mut round = 0;
    while !stop.load(Ordering::Acquire) {
        let url = server.url(&format!("/v1/functions/d{worker}-{}", round % 3));
        let response = client.put(url).body(bytes.clone()).send().await?;
        match response.status().as_u16() {
            201 => {}
            429 => {
                // Refused by the function quota or the API rate limit. A
                // client that ignores Retry-After floods the host with
                // connections, which no per-tenant quota can stop (see
                // docs/BENCHMARKS.md); this one honours it.
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            status => anyhow::bail!("a deploy answered {status}: {}", response.text().await?),
        }
        round += 1;
    }
    Ok(())
}
