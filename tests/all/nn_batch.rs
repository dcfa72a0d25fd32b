//! Dynamic batching in wasi-nn (issue 15, item 2): concurrent computes of
//! many instances merged into one, on both backends, checked against the
//! same requests computed alone.

use std::time::{Duration, Instant};

use base64::Engine as _;
use muon_tests::{B64, Backend, Server, error_of, generated_model, repo_file};
use serde_json::{Value, json};

const BACKENDS: [&str; 2] = ["tract", "onnxruntime"];

/// How far (in units in the last place) a batched fp32 output may be from
/// the same rows computed alone. ONNX Runtime is bit-exact (0). tract is not,
/// batched or not: its matrix kernels add in an order that depends on how
/// many rows a compute has, so a request's rows computed in one call and
/// one by one already differ in the last bits (2 ulps at most on digits on
/// the development machine; [`TRACT_ULPS`] leaves room for other CPUs' kernels).
fn tolerance_ulps(backend: &str) -> u32 {
    if backend == "tract" { TRACT_ULPS } else { 0 }
}

/// tract's tolerance, in units in the last place.
const TRACT_ULPS: u32 = 8;

/// The largest distance, in units in the last place, between two outputs'
/// fp32 elements (their names and dims must be equal).
fn ulps_apart(a: &Value, b: &Value) -> anyhow::Result<u32> {
    let (a, b) = (a.as_array().cloned().unwrap_or_default(), b.as_array().cloned().unwrap_or_default());
    anyhow::ensure!(a.len() == b.len() && !a.is_empty(), "{} outputs against {}", a.len(), b.len());
    let mut worst = 0;
    for (x, y) in a.iter().zip(&b) {
        anyhow::ensure!(x["name"] == y["name"] && x["dims"] == y["dims"], "{x} against {y}");
        let floats = |v: &Value| -> anyhow::Result<Vec<i64>> {
            let bytes = B64.decode(v["data_base64"].as_str().unwrap_or_default())?;
            // Ordered so that adjacent floats are adjacent integers, across zero too.
            Ok(bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .map(|i| if i < 0 { i64::from(i32::MIN) - i64::from(i) } else { i64::from(i) })
                .collect())
        };
        for (p, q) in floats(x)?.iter().zip(floats(y)?) {
            worst = worst.max(u32::try_from((p - q).unsigned_abs()).unwrap_or(u32::MAX));
        }
    }
    Ok(worst)
}

/// One call of a probe (functions/fixture-nn-probe): status, request id, answer.
struct Answer {
    status: u16,
    request_id: String,
    body: Value,
}

async fn call(server: &Server, function: &str, body: Value) -> anyhow::Result<Answer> {
    let response = server.http.post(server.url(&format!("/fn/default/{function}"))).json(&body).send().await?;
    let status = response.status().as_u16();
    let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
    let body = response.json().await?;
    Ok(Answer { status, request_id, body })
}

/// All `bodies` sent to `function` at once, answers in the same order.
async fn all_at_once(server: &Server, function: &str, bodies: Vec<Value>) -> anyhow::Result<Vec<Answer>> {
    let calls = bodies.into_iter().map(|body| call(server, function, body));
    futures_util::future::join_all(calls).await.into_iter().collect()
}

/// A probe of the digits model with images `first..first + rows` of the held-out split.
fn digits_probe(pixels: &[Value], first: usize, rows: usize) -> Value {
    let data: Vec<u8> = pixels[first..first + rows]
        .iter()
        .flat_map(|image| image.as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_f64())
        .flat_map(|v| (v as f32).to_le_bytes())
        .collect();
    let input = json!({ "name": "x", "type": "fp32", "dims": [rows, 64], "data_base64": B64.encode(data) });
    json!({ "model": "digits", "inputs": [input] })
}

/// Runs `work` while a probe of `function` holds `model` without computing
/// (sent first, given 200 ms to load the model, then paused for
/// `pause_ms`): a batch's window stays open its full length while someone
/// who holds the model could still join. The holder then fails validation,
/// so it never joins a batch.
async fn holding<T>(
    server: &Server,
    function: &str,
    model: &str,
    pause_ms: u64,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let input = json!({ "name": "nope", "type": "fp32", "dims": [1], "fill_f32": 0.0 });
    let held = call(server, function, json!({ "model": model, "inputs": [input], "pause_ms": pause_ms }));
    let later = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        work.await
    };
    let (held, out) = tokio::join!(held, later);
    assert_eq!(held?.body["code"], "invalid-argument");
    Ok(out)
}

fn slow_probe(rows: usize) -> Value {
    json!({ "model": "slow", "inputs": [{ "name": "x", "type": "fp32", "dims": [rows, 1024], "fill_f32": 0.5 }] })
}

/// `PUT /v1/models/{name}/batching`; the model as answered.
async fn set_batching(server: &Server, model: &str, settings: Value) -> anyhow::Result<Value> {
    let url = server.url(&format!("/v1/models/{model}/batching"));
    let response = server.http.put(url).json(&settings).send().await?;
    anyhow::ensure!(response.status() == 200, "setting batching answered {}", response.status());
    Ok(response.json().await?)
}

/// The model's `batching` as `GET /v1/models/{name}` shows it now.
async fn batching(server: &Server, model: &str) -> anyhow::Result<Value> {
    let out: Value = server.http.get(server.url(&format!("/v1/models/{model}"))).send().await?.json().await?;
    Ok(out["batching"].clone())
}

/// Requests of 1 to 4 rows each: the same requests computed alone, then
/// all at once in batches (one of them invalid), then in batches of at most
/// 4 rows. Every valid request gets exactly the bytes it got alone.
async fn batched_outputs_are_the_outputs_computed_alone(backend: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "models=digits").await?;
    let split: Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let pixels = split["pixels"].as_array().cloned().unwrap_or_default();
    let (mut probes, mut first) = (Vec::new(), 0);
    for i in 0..24 {
        let rows = 1 + i % 4;
        probes.push(digits_probe(&pixels, first, rows));
        first += rows;
    }
    let total_rows = first as u64;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, &format!("backend={backend}")).await?;
    let mut alone = Vec::new();
    for probe in &probes {
        let answer = call(&server, "probe", probe.clone()).await?;
        assert_eq!(answer.body["ok"], true, "{backend}: {}", answer.body);
        alone.push(answer.body["outputs"].clone());
    }
    let bad =
        json!({ "model": "digits", "inputs": [{ "name": "x", "type": "fp32", "dims": [2, 63], "fill_f32": 1.0 }] });
    let bad_alone = call(&server, "probe", bad.clone()).await?.body;
    assert_eq!(bad_alone["code"], "invalid-argument", "{bad_alone}");

    // Alone, a request does not wait out the window: no one else holds the model.
    let model = set_batching(&server, "digits", json!({ "batch_max": 256, "batch_wait_us": 1_000_000 })).await?;
    assert_eq!(model["version"], 2, "settings are the model's next version");
    let started = Instant::now();
    let lone = call(&server, "probe", probes[0].clone()).await?;
    assert!(started.elapsed() < Duration::from_millis(500), "{backend}: a lone request waited {:?}", started.elapsed());
    assert!(ulps_apart(&lone.body["outputs"], &alone[0])? <= tolerance_ulps(backend));
    let model = set_batching(&server, "digits", json!({ "batch_max": 256, "batch_wait_us": 300_000 })).await?;
    assert_eq!(model["batching"]["batchable"], true, "{model}");
    let mut bodies = probes.clone();
    bodies.push(bad.clone());
    let answers = holding(&server, "probe", "digits", 1000, all_at_once(&server, "probe", bodies)).await??;
    let mut worst = 0;
    for (answer, expected) in answers.iter().zip(&alone) {
        worst = worst.max(ulps_apart(&answer.body["outputs"], expected)?);
    }
    assert!(worst <= tolerance_ulps(backend), "{backend}: batched outputs are up to {worst} ulps off");
    let bad_batched = &answers[probes.len()].body;
    assert_eq!(*bad_batched, bad_alone, "{backend}: an invalid request is answered as it was alone");
    let counts = batching(&server, "digits").await?;
    assert_eq!(counts["requests"], 24, "{backend}: the invalid one never joined: {counts}");
    assert_eq!(counts["rows"], total_rows, "{counts}");
    assert!(
        counts["batches"].as_u64().is_some_and(|b| (1..24).contains(&b)),
        "{backend}: computes were merged: {counts}"
    );

    set_batching(&server, "digits", json!({ "batch_max": 4, "batch_wait_us": 100_000 })).await?;
    let answers = all_at_once(&server, "probe", probes).await?;
    let mut worst = 0;
    for (answer, expected) in answers.iter().zip(&alone) {
        worst = worst.max(ulps_apart(&answer.body["outputs"], expected)?);
    }
    assert!(worst <= tolerance_ulps(backend), "{backend}: in batches of 4 rows, up to {worst} ulps off");
    let counts = batching(&server, "digits").await?;
    assert_eq!(counts["rows"], total_rows, "{counts}");
    assert!(
        counts["widest"].as_u64().is_some_and(|w| (1..=4).contains(&w)),
        "{backend}: a batch wider than batch_max: {counts}"
    );
    assert!(counts["batches"].as_u64().is_some_and(|b| b >= total_rows / 4), "{counts}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_outputs_are_the_outputs_computed_alone_on_both_backends() -> anyhow::Result<()> {
    for backend in BACKENDS {
        batched_outputs_are_the_outputs_computed_alone(backend).await?;
    }
    Ok(())
}

/// Four requests of 8, 16, 32 and 8 rows in one batch: each is billed its
/// share of the batch's compute time by rows, and the shares add up to it.
#[tokio::test(flavor = "multi_thread")]
async fn each_request_is_billed_its_share_of_the_batch_by_rows_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "timeout_ms=60000").await?;
    let rows = [8u64, 16, 32, 8];
    for backend in BACKENDS {
        let query = format!("backend={backend}&batch_max=64&batch_wait_us=500000");
        server.push_model_ok("slow", generated_model("slow-rows.onnx")?, &query).await?;
        let probes = rows.iter().map(|&r| slow_probe(r as usize));
        let answers =
            holding(&server, "probe", "slow", 1500, all_at_once(&server, "probe", probes.collect())).await??;
        let counts = batching(&server, "slow").await?;
        assert_eq!((counts["batches"].as_u64(), counts["rows"].as_u64()), (Some(1), Some(64)), "{backend}: {counts}");
        let batch_us = counts["compute_us"].as_u64().unwrap_or(0);
        assert!(batch_us > 1000, "{backend}: {counts}");
        let records = server.usage_records(&server.http, None).await?;
        let mut billed = Vec::new();
        for answer in &answers {
            assert_eq!(answer.body["ok"], true, "{backend}: {}", answer.body);
            let record = records.iter().find(|r| r["request_id"] == answer.request_id.as_str()).unwrap();
            assert_eq!(record["nn_gpu_us"], 0, "{record}");
            billed.push(record["nn_cpu_us"].as_u64().unwrap_or(0));
        }
        assert_eq!(billed.iter().sum::<u64>(), batch_us, "{backend}: shares {billed:?} of {batch_us} µs");
        for (share, rows) in billed.iter().zip(rows) {
            let exact = batch_us * rows / 64;
            assert!((exact..=exact + 1).contains(share), "{backend}: {rows} rows billed {share} of {batch_us} µs");
        }
    }
    Ok(())
}

/// A request whose deadline passes while its batch gathers leaves it; one
/// whose deadline passes while its batch computes is answered `504` at its
/// deadline. Either way the others get their outputs.
#[tokio::test(flavor = "multi_thread")]
async fn each_request_keeps_its_own_deadline_inside_a_batch_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hurry", "fixture-nn-probe", "timeout_ms=300").await?;
    server.deploy_ok("patient", "fixture-nn-probe", "timeout_ms=60000").await?;
    for backend in BACKENDS {
        // Gathering for a second: the hurried request leaves before the batch computes.
        let query = format!("backend={backend}&batch_max=1024&batch_wait_us=1000000");
        server.push_model_ok("slow", generated_model("slow-rows.onnx")?, &query).await?;
        let both = async {
            tokio::join!(
                call(&server, "hurry", slow_probe(64)),
                all_at_once(&server, "patient", vec![slow_probe(32); 2])
            )
        };
        let (hurry, patient) = holding(&server, "patient", "slow", 2000, both).await?;
        assert_eq!(hurry?.status, 504, "{backend}");
        for answer in patient? {
            assert_eq!(answer.body["ok"], true, "{backend}: {}", answer.body);
            assert_eq!(answer.body["outputs"][0]["dims"], json!([32, 1024]));
        }
        let counts = batching(&server, "slow").await?;
        assert_eq!((counts["requests"].as_u64(), counts["rows"].as_u64()), (Some(2), Some(64)), "{backend}: {counts}");

        // A short window and a long compute: the hurried request is in the batch when its deadline passes.
        set_batching(&server, "slow", json!({ "batch_max": 1024, "batch_wait_us": 100_000 })).await?;
        let (started, shared) = (Instant::now(), &server);
        let timed = |function: &'static str, rows: usize| async move {
            let answer = call(shared, function, slow_probe(rows)).await;
            (answer, started.elapsed())
        };
        let both = async { tokio::join!(timed("hurry", 64), timed("patient", 448)) };
        let ((hurry, hurry_took), (patient, patient_took)) = holding(shared, "patient", "slow", 1000, both).await?;
        assert_eq!(hurry?.status, 504, "{backend}");
        let patient = patient?;
        assert_eq!(patient.body["ok"], true, "{backend}: {}", patient.body);
        assert_eq!(patient.body["outputs"][0]["dims"], json!([448, 1024]));
        assert!(hurry_took < patient_took, "{backend}: answered at its deadline ({hurry_took:?}), not with the batch");
        let counts = batching(&server, "slow").await?;
        assert_eq!((counts["requests"].as_u64(), counts["rows"].as_u64()), (Some(2), Some(512)), "{backend}: {counts}");
        assert!(hurry_took < Duration::from_millis(2000), "{backend}: {hurry_took:?}");
    }
    Ok(())
}

/// Models whose first dimension is fixed, or that have none, are never
/// batched, whatever they were given.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_a_batch_dimension_is_never_batched() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    for backend in BACKENDS {
        let query = format!("backend={backend}&batch_max=8&batch_wait_us=100000");
        let half = server.push_model_ok("half", generated_model("half.onnx")?, &query).await?;
        assert_eq!(half["inputs"][0]["shape"], json!([1, 4]));
        assert_eq!(half["batching"]["batchable"], false, "{half}");
        let x: Vec<u8> = [0x3c00u16, 0x4100, 0xc200, 0x3800].iter().flat_map(|v| v.to_le_bytes()).collect();
        let doubled: Vec<u8> = [0x4000u16, 0x4500, 0xc600, 0x3c00].iter().flat_map(|v| v.to_le_bytes()).collect();
        let input = json!({ "name": "x", "type": "fp16", "dims": [1, 4], "data_base64": B64.encode(&x) });
        let answers = all_at_once(&server, "probe", vec![json!({ "model": "half", "inputs": [input] }); 8]).await?;
        for answer in answers {
            assert_eq!(answer.body["outputs"][0]["data_base64"], B64.encode(&doubled), "{backend}: {}", answer.body);
        }
        assert_eq!(batching(&server, "half").await?["batches"], 0, "{backend}");
    }
    let range = server.push_model_ok("range", generated_model("range.onnx")?, "backend=tract&batch_max=8").await?;
    assert_eq!(range["batching"]["batchable"], false, "no first dimension at all: {range}");
    Ok(())
}

/// Settings out of bounds are refused; settings stay with the model across
/// a restart, on both databases.
async fn batching_settings_are_checked_and_kept(database: Backend) -> anyhow::Result<()> {
    let flags = database.flags()?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let temp = std::sync::Arc::new(tempfile::tempdir()?);
    let server = Server::start_in(temp.path(), &flags, Some(std::sync::Arc::clone(&temp))).await?;
    let digits = repo_file("examples/digits/digits.onnx")?;
    for query in ["batch_max=70000", "batch_max=8&batch_wait_us=2000000", "batch_wait_us=10", "batch_max=x"] {
        let response = server.push_model(&server.http, "digits", digits.clone(), query).await?;
        assert_eq!(error_of(response).await?.1, "bad_request", "{query}");
    }
    let out = server.push_model_ok("digits", digits.clone(), "batch_max=16").await?;
    assert_eq!(out["batching"]["batch_wait_us"], 1000, "the default window: {out}");
    let unknown = server.http.put(server.url("/v1/models/digits/batching")).json(&json!({ "max": 4 })).send().await?;
    assert_eq!(error_of(unknown).await?.1, "bad_request");
    let missing =
        server.http.put(server.url("/v1/models/nope/batching")).json(&json!({ "batch_max": 4 })).send().await?;
    assert_eq!(error_of(missing).await?.0, 404);
    set_batching(&server, "digits", json!({ "batch_max": 32, "batch_wait_us": 700 })).await?;
    assert_eq!(server.stop().await?, Some(0));
    let restarted = Server::start_in(temp.path(), &flags, Some(temp.clone())).await?;
    let kept = batching(&restarted, "digits").await?;
    assert_eq!((kept["batch_max"].clone(), kept["batch_wait_us"].clone()), (json!(32), json!(700)), "{kept}");
    let off = set_batching(&restarted, "digits", json!({ "batch_max": 0 })).await?;
    assert!(off.get("batching").is_none(), "batch_max 0 turns batching off: {off}");
    Ok(())
}

crate::on_both_databases!(batching_settings_are_checked_and_kept);
