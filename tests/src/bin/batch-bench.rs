//! The batching benchmark (issue 15, item 2): the same model through muon
//! with dynamic batching off and on, side by side in one run, at 1, 8, 32
//! and 64 concurrent clients: requests/s and latency p50/p99.
//!
//! Models: digits ([1, 64] per request) and the ResNet-50-sized model with a
//! batch dimension (`resnet50-batch.onnx`, [1, 3, 224, 224] per request).
//! Each client sends one row at a time to `functions/fixture-nn-probe`,
//! back to back on a keep-alive connection; every answer must be `"ok"`.
//! "Off" is the model uploaded without batching; "on" is the same bytes
//! with `PUT /v1/models/{name}/batching`. The mean batch width comes from
//! the model's own counts.
//!
//! Run it with `scripts/bench-batch.sh`, which builds what it needs.
//! Environment: `BATCH_BENCH_SECONDS` (each cell, default 5),
//! `BATCH_BENCH_BACKEND` (`onnxruntime` or `tract`, default onnxruntime),
//! `BATCH_BENCH_DIGITS` and `BATCH_BENCH_RESNET` (`batch_max,batch_wait_us`,
//! defaults `64,500` and `16,5000`), `BATCH_BENCH_MODELS` (`digits,resnet`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use muon_tests::{Server, generated_model, repo_file};
use serde_json::{Value, json};

const CLIENTS: [usize; 4] = [1, 8, 32, 64];
const WARM_UP: Duration = Duration::from_secs(1);

/// One model under test, with the one-row request every client sends.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    body: Bytes,
    batch_max: u32,
    batch_wait_us: u64,
}

/// One measured cell.
#[derive(Default, Clone, Copy)]
struct Cell {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Mean rows per batch (batching on only).
    width: f64,
}

fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).ok();
    let cell = Duration::from_secs_f64(env("BATCH_BENCH_SECONDS").and_then(|s| s.parse().ok()).unwrap_or(5.0));
    let backend = env("BATCH_BENCH_BACKEND").unwrap_or_else(|| "onnxruntime".to_owned());
    let models = env("BATCH_BENCH_MODELS").unwrap_or_else(|| "digits,resnet".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = runtime.block_on(Server::start(&[]))?;
    println!(
        "batch-bench: {} CPUs, muon serve with its defaults, backend {backend}, {} s per cell after {} s warm-up",
        std::thread::available_parallelism().map_or(1, usize::from),
        cell.as_secs_f64(),
        WARM_UP.as_secs_f64()
    );
    for model in models.split(',') {
        let case = match model {
            "digits" => digits(env("BATCH_BENCH_DIGITS").as_deref())?,
            "resnet" => resnet(env("BATCH_BENCH_RESNET").as_deref())?,
            other => anyhow::bail!("unknown model `{other}`: digits or resnet"),
        };
        runtime.block_on(bench(&server, &case, &backend, cell))?;
    }
    runtime.block_on(server.stop())?;
    Ok(())
}

/// Measures every cell with batching off, then on, and prints them side by side.
async fn bench(server: &Server, case: &Case, backend: &str, cell: Duration) -> anyhow::Result<()> {
    server.push_model_ok(case.name, case.bytes.clone(), &format!("backend={backend}")).await?;
    server.deploy_ok(case.name, "fixture-nn-probe", &format!("models={}&timeout_ms=120000", case.name)).await?;
    let mut off = Vec::new();
    for clients in CLIENTS {
        off.push(measure(server, case, clients, cell).await?);
    }
    let settings = json!({ "batch_max": case.batch_max, "batch_wait_us": case.batch_wait_us });
    let url = server.url(&format!("/v1/models/{}/batching", case.name));
    server.http.put(url).json(&settings).send().await?.error_for_status()?;
    let mut on = Vec::new();
    for clients in CLIENTS {
        on.push(measure(server, case, clients, cell).await?);
    }
    println!(
        "\n{} on {backend}, batching on = batch_max {} rows, batch_wait_us {}:",
        case.name, case.batch_max, case.batch_wait_us
    );
    println!(
        "{:>7} | {:>9} {:>9} {:>6} | {:>8} {:>8} | {:>8} {:>8} | {:>5}",
        "clients", "off req/s", "on req/s", "on/off", "p50 off", "p50 on", "p99 off", "p99 on", "width"
    );
    for ((clients, off), on) in CLIENTS.iter().zip(&off).zip(&on) {
        println!(
            "{clients:>7} | {:>9.1} {:>9.1} {:>5.2}x | {:>6.2}ms {:>6.2}ms | {:>6.2}ms {:>6.2}ms | {:>5.1}",
            off.rate,
            on.rate,
            on.rate / off.rate,
            off.p50_ms,
            on.p50_ms,
            off.p99_ms,
            on.p99_ms,
            on.width
        );
    }
    Ok(())
}

/// `clients` clients sending requests back to back: a warm-up, then `cell`.
async fn measure(server: &Server, case: &Case, clients: usize, cell: Duration) -> anyhow::Result<Cell> {
    run(server, case, clients, WARM_UP).await?;
    let before = counts(server, case.name).await?;
    let samples = run(server, case, clients, cell).await?;
    let after = counts(server, case.name).await?;
    let mut latencies = samples.latencies;
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let batches = after.0 - before.0;
    let width = if batches > 0 { (after.1 - before.1) as f64 / batches as f64 } else { 0.0 };
    let rate = latencies.len() as f64 / samples.elapsed.as_secs_f64();
    let measured = Cell { rate, p50_ms: quantile(0.5), p99_ms: quantile(0.99), width };
    println!(
        "  {} {clients:>2} clients: {:.1} req/s, p50 {:.2} ms, p99 {:.2} ms{}",
        case.name,
        measured.rate,
        measured.p50_ms,
        measured.p99_ms,
        if batches > 0 { format!(", {width:.1} rows per batch") } else { String::new() }
    );
    Ok(measured)
}

struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

async fn run(server: &Server, case: &Case, clients: usize, length: Duration) -> anyhow::Result<Samples> {
    let url = server.url(&format!("/fn/default/{}", case.name));
    let latencies = Mutex::new(Vec::new());
    let started = Instant::now();
    let client = || async {
        let mut own = Vec::new();
        while started.elapsed() < length {
            let one = Instant::now();
            let response = server
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(case.body.clone())
                .send()
                .await?;
            let status = response.status();
            let text = response.bytes().await?;
            ensure!(status == 200, "{url} answered {status}: {}", String::from_utf8_lossy(&text));
            let answer: Value = serde_json::from_slice(&text)?;
            ensure!(answer["ok"] == true, "{url} failed: {answer}");
            own.push(one.elapsed());
        }
        latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.extend(own);
        anyhow::Ok(())
    };
    futures_util::future::try_join_all((0..clients).map(|_| client())).await?;
    let elapsed = started.elapsed();
    let latencies = latencies.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(Samples { latencies, elapsed })
}

/// The model's batches and rows so far (0 while it is not batched).
async fn counts(server: &Server, model: &str) -> anyhow::Result<(u64, u64)> {
    let out: Value = server.http.get(server.url(&format!("/v1/models/{model}"))).send().await?.json().await?;
    let field = |name: &str| out["batching"][name].as_u64().unwrap_or(0);
    Ok((field("batches"), field("rows")))
}

/// `batch_max,batch_wait_us`, or the defaults.
fn settings(text: Option<&str>, default: (u32, u64)) -> anyhow::Result<(u32, u64)> {
    let Some(text) = text else { return Ok(default) };
    let (max, wait) = text.split_once(',').context("settings are batch_max,batch_wait_us")?;
    Ok((max.trim().parse()?, wait.trim().parse()?))
}

fn digits(text: Option<&str>) -> anyhow::Result<Case> {
    let split: Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let pixels: Vec<u8> = split["pixels"][0]
        .as_array()
        .context("test-split.json has no pixels")?
        .iter()
        .filter_map(Value::as_f64)
        .flat_map(|v| (v as f32).to_le_bytes())
        .collect();
    let (batch_max, batch_wait_us) = settings(text, (64, 500))?;
    let bytes = repo_file("examples/digits/digits.onnx")?;
    Ok(Case { name: "digits", bytes, body: body("digits", "x", &[1, 64], &pixels)?, batch_max, batch_wait_us })
}

fn resnet(text: Option<&str>) -> anyhow::Result<Case> {
    // Seeded pixels in [0, 1): a splitmix64 step per value.
    let mut state = 0x5eed_u64;
    let pixels: Vec<u8> = (0..3 * 224 * 224)
        .flat_map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32).to_le_bytes()
        })
        .collect();
    let (batch_max, batch_wait_us) = settings(text, (16, 5000))?;
    let bytes = generated_model("resnet50-batch.onnx")?;
    let body = body("resnet", "data", &[1, 3, 224, 224], &pixels)?;
    Ok(Case { name: "resnet", bytes, body, batch_max, batch_wait_us })
}

fn body(model: &str, input: &str, dims: &[u32], data: &[u8]) -> anyhow::Result<Bytes> {
    let probe = json!({
        "model": model,
        "inputs": [{ "name": input, "type": "fp32", "dims": dims, "data_base64": B64.encode(data) }],
    });
    Ok(Bytes::from(serde_json::to_vec(&probe)?))
}
