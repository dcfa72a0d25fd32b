//! The inference benchmark: muon end to end (HTTP in, guest, wasi-nn compute,
//! HTTP out) against the same backend called directly from Rust, side by side
//! in one run, for tract and ONNX Runtime on a small model (digits, [1, 64])
//! and a heavy one (ResNet-50, [1, 3, 224, 224]).
//!
//! For each backend and model it measures
//! - latency with one client: mean and p50 of muon and of a direct
//!   `LoadedModel::run`, their ratio and the microseconds muon adds;
//! - throughput with 1, 2 and 8 concurrent clients through muon, against 1, 2
//!   and 8 threads calling one shared loaded model directly.
//!
//! muon runs as a child process (`muon serve`, as the integration tests start
//! it) with metering on and one intra-op thread per session; the direct side
//! uses the same session count (the CPU count) and intra-op threads. Requests
//! go to `functions/fixture-nn-probe`, and every answer is checked for
//! `"ok": true`: a benchmark that measures errors is worthless.
//!
//! Run it with `scripts/bench-nn.sh`, which builds what it needs.
//! `NN_BENCH_SECONDS` sets each measured cell's length (default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use muon::nn::backend::{Backend, Cancel, Device, LoadedModel, OnnxRuntime, RunBudget, Tract};
use muon::nn::{ElementType, HostTensor, inspect_onnx};
use muon_tests::{Server, generated_model, repo_file, target_dir};
use serde_json::{Value, json};

/// Concurrent clients (and direct threads) of the throughput cells.
const CLIENTS: [usize; 3] = [1, 2, 8];
/// Warm-up before each measured cell.
const WARM_UP: Duration = Duration::from_secs(1);
/// Fewest samples a latency cell takes, however long they take.
const MIN_SAMPLES: usize = 20;

/// One model with the input every request sends.
struct Case {
    /// `small` or `heavy`, as the tables print it.
    label: &'static str,
    /// The model file's bytes.
    bytes: Vec<u8>,
    /// The input as muon's backends take it.
    input: HostTensor,
    /// The input's name in the model.
    input_name: String,
}

/// A backend under test.
#[derive(Clone, Copy)]
enum Which {
    Tract,
    OnnxRuntime,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::OnnxRuntime => "onnxruntime",
        }
    }
}

/// One latency cell: muon and direct, one client each.
struct Latency {
    muon: Stats,
    /// What muon's own metrics saw during `muon`.
    inside: Inside,
    direct: Stats,
}

/// One throughput cell: requests/s through muon and directly.
struct Throughput {
    clients: usize,
    muon: f64,
    inside: Inside,
    native: f64,
}

/// Everything measured for one backend and model.
struct Row {
    backend: Which,
    model: &'static str,
    latency: Latency,
    throughput: Vec<Throughput>,
    /// CPU that processes other than this benchmark and its server used
    /// meanwhile, in percent of one CPU: a check that the machine was quiet.
    others_cpu: f64,
}

fn main() -> anyhow::Result<()> {
    let cell =
        Duration::from_secs_f64(std::env::var("NN_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0));
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let cases = [digits()?, resnet50()?];
    println!(
        "nn-bench: {cpus} CPUs; muon serve --nn-intra-op-threads 1 (nn-threads = sessions per model = {cpus}), \
         metering on; direct: {cpus} sessions, 1 intra-op thread; {} s per cell after {} s warm-up",
        cell.as_secs_f64(),
        WARM_UP.as_secs_f64()
    );
    println!("load average at start: {}", load_average());

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = runtime.block_on(Server::start(&["--nn-intra-op-threads", "1"]))?;
    let onnxruntime = OnnxRuntime::load(&onnxruntime_library(), cpus, 1, false)?;

    let mut rows = Vec::new();
    for backend in [Which::Tract, Which::OnnxRuntime] {
        for case in &cases {
            rows.push(bench_case(&runtime, &server, &onnxruntime, backend, case, cell)?);
        }
    }
    print_summary(&rows);
    println!("load average at end: {}", load_average());
    runtime.block_on(server.stop())?;
    Ok(())
}

/// Serves one model on one backend through muon and loads it directly,
/// checks that both compute the same outputs, then measures every cell.
fn bench_case(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    onnxruntime: &OnnxRuntime,
    backend: Which,
    case: &Case,
    cell: Duration,
) -> anyhow::Result<Row> {
    let name = format!("{}-{}", case.label, backend.name());
    runtime.block_on(deploy(server, &name, case, backend))?;
    let target = Target::new(server, &name, case)?;
    let direct: &dyn Backend = match backend {
        Which::Tract => &Tract,
        Which::OnnxRuntime => onnxruntime,
    };
    let model = direct.load(&case.bytes, &inspect_onnx(&case.bytes)?, Device::Cpu)?;
    runtime.block_on(target.check_against(model.as_ref(), &case.input))?;
    println!("{} on {} ({} bytes in):", case.label, backend.name(), case.input.data.len());
    let others = CpuShare::start(server.pid()?)?;
    let mut row = measure(runtime, backend, case.label, &target, &model, &case.input, cell)?;
    row.others_cpu = others.others_percent()?;
    println!("  other processes used {:.1}% of a CPU meanwhile", row.others_cpu);
    Ok(row)
}

/// Runs every cell of one backend and model, muon first, then direct.
fn measure(
    runtime: &tokio::runtime::Runtime,
    backend: Which,
    model: &'static str,
    target: &Target,
    loaded: &Arc<dyn LoadedModel>,
    input: &HostTensor,
    cell: Duration,
) -> anyhow::Result<Row> {
    let (muon, inside) = runtime.block_on(target.latency(cell))?;
    let direct = direct_latency(loaded.as_ref(), input, cell)?;
    println!("  latency, 1 client: muon {muon} ({inside}); direct {direct}");
    let mut throughput = Vec::new();
    for clients in CLIENTS {
        let (muon, inside) = runtime.block_on(target.throughput(clients, cell))?;
        let native = direct_throughput(loaded, input, clients, cell)?;
        println!("  {clients} clients: muon {muon:.1} req/s ({inside}), direct {native:.1} req/s");
        throughput.push(Throughput { clients, muon, inside, native });
    }
    Ok(Row { backend, model, latency: Latency { muon, inside, direct }, throughput, others_cpu: 0.0 })
}

/// The digits classifier with the first image of the test split.
fn digits() -> anyhow::Result<Case> {
    let split: Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let pixels: Vec<f32> = split["pixels"][0]
        .as_array()
        .context("test-split.json has no pixels")?
        .iter()
        .filter_map(Value::as_f64)
        .map(|v| v as f32)
        .collect();
    ensure!(pixels.len() == 64, "the first image has {} pixels, not 64", pixels.len());
    case("small", repo_file("examples/digits/digits.onnx")?, vec![1, 64], &pixels)
}

/// ResNet-50 with seeded random pixels.
fn resnet50() -> anyhow::Result<Case> {
    let mut seed = 0x5eed_u64;
    let pixels: Vec<f32> = (0..3 * 224 * 224).map(|_| random_unit(&mut seed)).collect();
    case("heavy", generated_model("resnet50.onnx")?, vec![1, 3, 224, 224], &pixels)
}

fn case(label: &'static str, bytes: Vec<u8>, dimensions: Vec<u32>, values: &[f32]) -> anyhow::Result<Case> {
    let signature = inspect_onnx(&bytes)?;
    let input_name = signature.inputs.first().context("the model has no input")?.name.clone();
    let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(Case { label, bytes, input: HostTensor { dimensions, ty: ElementType::Fp32, data }, input_name })
}

/// A float in [0, 1) from a splitmix64 step: reproducible without a crate.
fn random_unit(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Uploads the model as `name` on `backend` and deploys the probe as `name`,
/// allowed to use it. The timeout covers the first request's model load.
async fn deploy(server: &Server, name: &str, case: &Case, backend: Which) -> anyhow::Result<()> {
    server.push_model_ok(name, case.bytes.clone(), &format!("backend={}", backend.name())).await?;
    server.deploy_ok(name, "fixture-nn-probe", &format!("models={name}&timeout_ms=120000")).await?;
    Ok(())
}

/// The probe function of one backend and model, with the request it gets.
struct Target {
    http: reqwest::Client,
    url: String,
    metrics_url: String,
    /// The function's label in muon's metrics.
    label: String,
    /// The JSON probe, made once: clients send the same bytes each time.
    body: Bytes,
}

impl Target {
    fn new(server: &Server, name: &str, case: &Case) -> anyhow::Result<Self> {
        let body = json!({
            "model": name,
            "inputs": [{
                "name": case.input_name,
                "type": "fp32",
                "dims": case.input.dimensions,
                "data_base64": B64.encode(&case.input.data),
            }],
        });
        Ok(Self {
            http: server.http.clone(),
            url: server.url(&format!("/fn/default/{name}")),
            metrics_url: server.url("/metrics"),
            label: format!("default/{name}"),
            body: Bytes::from(serde_json::to_vec(&body)?),
        })
    }

    /// One request; fails unless muon answers 200 and the probe `ok`.
    async fn call(&self) -> anyhow::Result<Value> {
        let response =
            self.http.post(&self.url).header("content-type", "application/json").body(self.body.clone()).send().await?;
        let status = response.status();
        let text = response.bytes().await?;
        ensure!(status == 200, "{} answered {status}: {}", self.url, String::from_utf8_lossy(&text));
        let answer: Value = serde_json::from_slice(&text)?;
        ensure!(answer["ok"] == true, "{} failed: {answer}", self.url);
        Ok(answer)
    }

    /// Checks that muon's outputs are what the direct call computes (the
    /// first request also loads the model on the server).
    async fn check_against(&self, model: &dyn LoadedModel, input: &HostTensor) -> anyhow::Result<()> {
        let answer = self.call().await?;
        let expected = model.run(vec![input.clone()], RunBudget::outputs(u64::MAX), &Cancel::default())?;
        let outputs = answer["outputs"].as_array().context("no outputs")?;
        ensure!(outputs.len() == expected.len(), "muon gave {} outputs, direct {}", outputs.len(), expected.len());
        for (output, tensor) in outputs.iter().zip(&expected) {
            let data = B64.decode(output["data_base64"].as_str().context("no data_base64")?)?;
            ensure!(
                output["dims"] == json!(tensor.dimensions),
                "dims differ: {} vs {:?}",
                output["dims"],
                tensor.dimensions
            );
            ensure!(
                same_values(&data, &tensor.data, tensor.ty),
                "muon and direct outputs differ for {}",
                output["name"]
            );
        }
        Ok(())
    }

    /// Sequential requests from one client.
    async fn latency(&self, cell: Duration) -> anyhow::Result<(Stats, Inside)> {
        let warm = Instant::now();
        while warm.elapsed() < WARM_UP {
            self.call().await?;
        }
        let before = self.totals().await?;
        let mut samples = Vec::new();
        let started = Instant::now();
        while started.elapsed() < cell || samples.len() < MIN_SAMPLES {
            let one = Instant::now();
            self.call().await?;
            samples.push(one.elapsed());
        }
        Ok((Stats::of(samples), self.totals().await?.since(&before)))
    }

    /// Requests/s of `clients` concurrent clients, each on its own
    /// keep-alive connection, sending requests back to back.
    async fn throughput(&self, clients: usize, cell: Duration) -> anyhow::Result<(f64, Inside)> {
        let run = |length: Duration| async move {
            let done = AtomicU64::new(0);
            let started = Instant::now();
            let client = || async {
                while started.elapsed() < length {
                    self.call().await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            };
            futures_util::future::try_join_all((0..clients).map(|_| client())).await?;
            anyhow::Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
        };
        run(WARM_UP).await?;
        let before = self.totals().await?;
        let rate = run(cell).await?;
        Ok((rate, self.totals().await?.since(&before)))
    }

    /// muon's running totals of request and compute time for this function.
    /// Compute time is per device, not per function: cells run one at a time.
    async fn totals(&self) -> anyhow::Result<Totals> {
        let text = self.http.get(&self.metrics_url).send().await?.error_for_status()?.text().await?;
        let value = |name: &str, labels: &str| {
            let prefix = if labels.is_empty() { format!("{name} ") } else { format!("{name}{{{labels}}} ") };
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let function = format!("function=\"{}\"", self.label);
        Ok(Totals {
            request: (
                value("muon_request_duration_seconds_sum", &function),
                value("muon_request_duration_seconds_count", &function),
            ),
            compute: (
                value("muon_nn_compute_seconds_sum", "device=\"cpu\""),
                value("muon_nn_compute_seconds_count", "device=\"cpu\""),
            ),
            ledger: (value("muon_ledger_write_seconds_sum", ""), value("muon_ledger_write_seconds_count", "")),
        })
    }
}

/// Running (seconds, count) totals read from muon's `/metrics`.
struct Totals {
    request: (f64, f64),
    compute: (f64, f64),
    ledger: (f64, f64),
}

impl Totals {
    /// The means over what happened since `before`.
    fn since(&self, before: &Totals) -> Inside {
        let mean = |now: (f64, f64), then: (f64, f64)| {
            let count = now.1 - then.1;
            if count > 0.0 { (now.0 - then.0) / count * 1e6 } else { f64::NAN }
        };
        Inside {
            request_us: mean(self.request, before.request),
            compute_us: mean(self.compute, before.compute),
            ledger_us: mean(self.ledger, before.ledger),
        }
    }
}

/// Mean times muon measured itself: a request from admission to its result
/// (`muon_request_duration_seconds`), the backend's compute in it
/// (`muon_nn_compute_seconds`), and the durable write of a batch of usage
/// records that a response waits for (`muon_ledger_write_seconds`).
struct Inside {
    request_us: f64,
    compute_us: f64,
    ledger_us: f64,
}

impl std::fmt::Display for Inside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in muon: request {:.0} µs, compute {:.0} µs, ledger write {:.0} µs",
            self.request_us, self.compute_us, self.ledger_us
        )
    }
}

/// Sequential direct calls from this thread.
fn direct_latency(model: &dyn LoadedModel, input: &HostTensor, cell: Duration) -> anyhow::Result<Stats> {
    let warm = Instant::now();
    while warm.elapsed() < WARM_UP {
        model.run(vec![input.clone()], RunBudget::outputs(u64::MAX), &Cancel::default())?;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < cell || samples.len() < MIN_SAMPLES {
        let one = Instant::now();
        model.run(vec![input.clone()], RunBudget::outputs(u64::MAX), &Cancel::default())?;
        samples.push(one.elapsed());
    }
    Ok(Stats::of(samples))
}

/// Calls/s of `threads` threads calling one shared model back to back.
fn direct_throughput(
    model: &Arc<dyn LoadedModel>,
    input: &HostTensor,
    threads: usize,
    cell: Duration,
) -> anyhow::Result<f64> {
    let run = |length: Duration| {
        let done = AtomicU64::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        while started.elapsed() < length {
                            model.run(vec![input.clone()], RunBudget::outputs(u64::MAX), &Cancel::default())?;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| match worker.join() {
                Ok(result) => result,
                Err(_) => bail!("a benchmark thread panicked"),
            })
        })?;
        anyhow::Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    };
    run(WARM_UP)?;
    run(cell)
}

/// Whether two little-endian outputs agree: floats to a relative 1e-4
/// (another process may pick other kernels), everything else exactly.
fn same_values(a: &[u8], b: &[u8], ty: ElementType) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match ty {
        ElementType::Fp32 => a.chunks_exact(4).zip(b.chunks_exact(4)).all(|(x, y)| {
            let (x, y) = (f32::from_le_bytes([x[0], x[1], x[2], x[3]]), f32::from_le_bytes([y[0], y[1], y[2], y[3]]));
            (x - y).abs() <= 1e-4 * x.abs().max(1.0)
        }),
        _ => a == b,
    }
}

/// Mean and median of one cell's samples.
struct Stats {
    count: usize,
    mean: Duration,
    p50: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let count = samples.len();
        let total: Duration = samples.iter().sum();
        let mean = total / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
        let p50 = samples.get(count / 2).copied().unwrap_or_default();
        Self { count, mean, p50 }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mean {:.0} µs, p50 {:.0} µs ({} runs)", micros(self.mean), micros(self.p50), self.count)
    }
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn print_summary(rows: &[Row]) {
    println!();
    println!(
        "latency, 1 client (µs; overhead = muon - direct; in-muon request, compute and ledger write from its /metrics)"
    );
    println!(
        "{:<12} {:<6} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>6} {:>9} {:>10} {:>10} {:>6}",
        "backend",
        "model",
        "muon mean",
        "dir. mean",
        "ratio",
        "overhead",
        "muon p50",
        "dir. p50",
        "ratio",
        "overhead",
        "in-muon rq",
        "in-muon nn",
        "ledger"
    );
    for row in rows {
        let (muon, direct, inside) = (&row.latency.muon, &row.latency.direct, &row.latency.inside);
        println!(
            "{:<12} {:<6} {:>10.0} {:>10.0} {:>6.3} {:>9.0} {:>9.0} {:>9.0} {:>6.3} {:>9.0} {:>10.0} {:>10.0} {:>6.0}",
            row.backend.name(),
            row.model,
            micros(muon.mean),
            micros(direct.mean),
            micros(muon.mean) / micros(direct.mean),
            micros(muon.mean) - micros(direct.mean),
            micros(muon.p50),
            micros(direct.p50),
            micros(muon.p50) / micros(direct.p50),
            micros(muon.p50) - micros(direct.p50),
            inside.request_us,
            inside.compute_us,
            inside.ledger_us,
        );
    }
    println!();
    println!("throughput (requests/s; native = direct calls from as many threads; in-muon compute mean in µs)");
    println!(
        "{:<12} {:<6} {:>8} {:>10} {:>10} {:>12} {:>11}",
        "backend", "model", "clients", "muon", "native", "muon/native", "in-muon nn"
    );
    for row in rows {
        for cell in &row.throughput {
            println!(
                "{:<12} {:<6} {:>8} {:>10.1} {:>10.1} {:>12.3} {:>11.0}",
                row.backend.name(),
                row.model,
                cell.clients,
                cell.muon,
                cell.native,
                cell.muon / cell.native,
                cell.inside.compute_us
            );
        }
    }
    println!();
    let others: Vec<String> =
        rows.iter().map(|row| format!("{} {} {:.1}%", row.backend.name(), row.model, row.others_cpu)).collect();
    println!("CPU used by other processes (percent of one CPU): {}", others.join(", "));
    for row in rows.iter().filter(|row| row.model == "heavy") {
        let at = |clients| row.throughput.iter().find(|cell| cell.clients == clients);
        if let (Some(one), Some(eight)) = (at(1), at(8)) {
            let ratio = eight.muon / one.muon;
            let verdict = if ratio >= 1.6 { "meets" } else { "MISSES" };
            println!(
                "heavy model on {}: muon 8 clients / 1 client = {ratio:.2} ({verdict} >= 1.6); native {:.2}",
                row.backend.name(),
                eight.native / one.native
            );
        }
    }
}

/// CPU time of the whole machine against this process's and the server's,
/// from `/proc` (clock ticks), to tell how much other processes took.
struct CpuShare {
    server: u32,
    started: Instant,
    machine: u64,
    ours: u64,
}

impl CpuShare {
    fn start(server: u32) -> anyhow::Result<Self> {
        let (machine, ours) = Self::read(server)?;
        Ok(Self { server, started: Instant::now(), machine, ours })
    }

    /// Busy ticks of the machine and of the two processes.
    fn read(server: u32) -> anyhow::Result<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu = stat.lines().next().context("empty /proc/stat")?;
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        let fields: Vec<u64> = cpu.split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
        ensure!(fields.len() == 8, "unexpected /proc/stat: {cpu}");
        let machine = fields.iter().sum::<u64>() - fields[3] - fields[4];
        let process = |pid: &str| -> anyhow::Result<u64> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            // utime and stime are fields 14 and 15; the name before them may hold spaces.
            let after_name = stat.rsplit_once(')').context("unexpected /proc/PID/stat")?.1;
            let times: Vec<u64> =
                after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
            Ok(times.iter().sum())
        };
        Ok((machine, process("self")? + process(&server.to_string())?))
    }

    /// Percent of one CPU that other processes used since `start`.
    fn others_percent(&self) -> anyhow::Result<f64> {
        let (machine, ours) = Self::read(self.server)?;
        let others = machine.saturating_sub(self.machine).saturating_sub(ours.saturating_sub(self.ours));
        // Clock ticks are 1/100 s on Linux (USER_HZ).
        Ok(others as f64 / 100.0 / self.started.elapsed().as_secs_f64() * 100.0)
    }
}

/// `/proc/loadavg`'s three averages, or `unknown`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `MUON_ORT_DYLIB`, else where `scripts/onnxruntime.sh` puts the library.
fn onnxruntime_library() -> std::path::PathBuf {
    std::env::var_os("MUON_ORT_DYLIB")
        .map_or_else(|| target_dir().join("onnxruntime/libonnxruntime.so"), std::path::PathBuf::from)
}
