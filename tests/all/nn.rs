//! wasi-nn inference: models over HTTP, both backends, the standard
//! interface, validation, deadlines and metering.

use std::time::{Duration, Instant};

use base64::Engine as _;
use muon_tests::{B64, Backend, Server, digit_tensor, error_of, generated_model, repo_file};
use serde_json::{Value, json};

/// The held-out digits split, with ONNX Runtime's answers from Python.
struct DigitsSplit {
    pixels: Vec<Value>,
    labels: Vec<i64>,
    onnxruntime: Vec<Vec<f64>>,
    accuracy: f64,
}

fn digits_split() -> anyhow::Result<DigitsSplit> {
    let split: Value = serde_json::from_slice(&repo_file("examples/digits/test-split.json")?)?;
    let accuracy: Value = serde_json::from_slice(&repo_file("examples/digits/accuracy.json")?)?;
    let floats = |v: &Value| v.as_array().into_iter().flatten().filter_map(Value::as_f64).collect::<Vec<_>>();
    Ok(DigitsSplit {
        pixels: split["pixels"].as_array().cloned().unwrap_or_default(),
        labels: split["labels"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect(),
        onnxruntime: split["onnxruntime_probabilities"].as_array().into_iter().flatten().map(floats).collect(),
        accuracy: accuracy["onnxruntime"].as_f64().unwrap_or(1.0),
    })
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn floats(value: &Value) -> Vec<f64> {
    value.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
}

async fn models_api_round_trip(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let digits = repo_file("examples/digits/digits.onnx")?;
    let out = server.push_model_ok("digits", digits.clone(), "backend=tract").await?;
    assert_eq!(out["name"], "digits");
    assert_eq!(out["version"], 1);
    assert_eq!(out["backend"], "tract");
    assert_eq!(out["target"], "cpu");
    assert_eq!(out["size"], digits.len() as u64);
    assert_eq!(out["digest"].as_str().map(str::len), Some(64));
    assert_eq!(out["inputs"], json!([{ "name": "x", "type": "fp32", "shape": ["N", 64] }]));
    assert_eq!(out["outputs"], json!([{ "name": "probabilities", "type": "fp32", "shape": ["N", 10] }]));

    let list: Value = server.http.get(server.url("/v1/models")).send().await?.json().await?;
    assert_eq!(list["models"].as_array().map(Vec::len), Some(1));
    let one: Value = server.http.get(server.url("/v1/models/digits")).send().await?.json().await?;
    assert_eq!(one["digest"], out["digest"]);
    let again = server.push_model_ok("digits", digits.clone(), "backend=tract").await?;
    assert_eq!(again["version"], 2, "an upload to a name is its next version");
    let list: Value = server.http.get(server.url("/v1/models")).send().await?.json().await?;
    assert_eq!(list["models"].as_array().map(Vec::len), Some(1), "and replaces the one before: {list}");

    let junk = server.push_model(&server.http, "junk", b"definitely not onnx".to_vec(), "").await?;
    let (status, code, message) = error_of(junk).await?;
    assert_eq!((status, code.as_str()), (400, "invalid_model"), "{message}");
    let bad_name = server.push_model(&server.http, "Bad_Name", digits.clone(), "").await?;
    assert_eq!(bad_name.status(), 400);
    let bad_backend = server.push_model(&server.http, "digits2", digits.clone(), "backend=tensorflow").await?;
    assert_eq!(error_of(bad_backend).await?.0, 400);
    let bad_encoding = server.push_model(&server.http, "digits2", digits, "encoding=ggml").await?;
    assert_eq!(error_of(bad_encoding).await?.0, 400);

    let deleted = server.http.delete(server.url("/v1/models/digits")).send().await?;
    assert_eq!(deleted.status(), 200);
    let gone = server.http.get(server.url("/v1/models/digits")).send().await?;
    assert_eq!(error_of(gone).await?.1, "not_found");
    Ok(())
}

async fn models_and_their_functions_survive_a_restart(backend: Backend) -> anyhow::Result<()> {
    let flags = backend.flags()?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let temp = std::sync::Arc::new(tempfile::tempdir()?);
    let server = Server::start_in(temp.path(), &flags, Some(std::sync::Arc::clone(&temp))).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("digits", "digits", "models=digits").await?;
    let split = digits_split()?;
    let before: Value = server
        .http
        .post(server.url("/fn/default/digits"))
        .json(&json!({ "pixels": split.pixels[0] }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(server.stop().await?, Some(0));
    let restarted = Server::start_in(temp.path(), &flags, Some(temp.clone())).await?;
    let list: Value = restarted.http.get(restarted.url("/v1/models")).send().await?.json().await?;
    assert_eq!(list["models"][0]["name"], "digits");
    let after: Value = restarted
        .http
        .post(restarted.url("/fn/default/digits"))
        .json(&json!({ "pixels": split.pixels[0] }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(before["digit"], after["digit"]);
    assert!(max_abs_diff(&floats(&before["probabilities"]), &floats(&after["probabilities"])) < 1e-6);
    Ok(())
}

crate::on_both_databases!(models_api_round_trip, models_and_their_functions_survive_a_restart);

/// Classifies the whole held-out split in one batched request and checks
/// accuracy and each probability against ONNX Runtime's in Python.
async fn check_digits_accuracy(server: &Server) -> anyhow::Result<()> {
    let split = digits_split()?;
    let response =
        server.http.post(server.url("/fn/default/digits")).json(&json!({ "images": split.pixels })).send().await?;
    assert_eq!(response.status(), 200);
    let out: Value = response.json().await?;
    let digits: Vec<i64> = out["digits"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    assert_eq!(digits.len(), split.labels.len());
    let correct = digits.iter().zip(&split.labels).filter(|(a, b)| a == b).count();
    let accuracy = correct as f64 / split.labels.len() as f64;
    assert!(accuracy >= split.accuracy - 1e-9, "accuracy {accuracy} under the original model's {}", split.accuracy);
    for (got, want) in out["probabilities"].as_array().into_iter().flatten().zip(&split.onnxruntime) {
        assert!(max_abs_diff(&floats(got), want) < 1e-4, "{got} vs {want:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn digits_example_reaches_the_original_accuracy_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("digits", "digits", "models=digits").await?;
    for backend in ["tract", "onnxruntime"] {
        let out = server
            .push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, &format!("backend={backend}"))
            .await?;
        assert_eq!(out["backend"], backend);
        check_digits_accuracy(&server).await?;
    }
    let single: Value = server
        .http
        .post(server.url("/fn/default/digits"))
        .json(&json!({ "pixels": [1, 2, 3] }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(single["error"]["code"], "bad_request", "{single}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standard_wasi_nn_http_component_matches_onnx_runtime() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "").await?;
    let deployed = server.deploy_ok("classify", "nn-digits-http", "").await?;
    assert_eq!(deployed["kind"], "http");
    let split = digits_split()?;
    for (index, pixels) in split.pixels.iter().enumerate().take(60) {
        let out: Value = server
            .http
            .post(server.url("/fn/default/classify"))
            .json(&json!({ "pixels": pixels }))
            .send()
            .await?
            .json()
            .await?;
        let probabilities = floats(&out["probabilities"]);
        assert!(max_abs_diff(&probabilities, &split.onnxruntime[index]) < 1e-4, "image {index}: {out}");
        let expected = split.onnxruntime[index]
            .iter()
            .enumerate()
            .fold(0, |best, (i, p)| if *p > split.onnxruntime[index][best] { i } else { best });
        assert_eq!(out["digit"], expected, "image {index}");
    }
    Ok(())
}

/// Posts a probe (functions/fixture-nn-probe) and returns its JSON answer.
async fn probe(server: &Server, name: &str, body: Value) -> anyhow::Result<Value> {
    server.post_json(&server.http, &format!("/fn/default/{name}"), &body).await
}

async fn assert_good_request_works(server: &Server, probe_name: &str) -> anyhow::Result<()> {
    let out = probe(server, probe_name, json!({ "model": "digits", "inputs": [digit_tensor()?] })).await?;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["outputs"][0]["name"], "probabilities");
    assert_eq!(out["outputs"][0]["dims"], json!([1, 10]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_wasi_nn_errors_and_the_model_keeps_answering() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.push_model_ok("wine", repo_file("examples/wine/wine.onnx")?, "backend=tract").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "models=digits").await?;
    assert_good_request_works(&server, "probe").await?;
    let input = |ty: &str, dims: Value, fill_bytes: u64| json!({ "name": "x", "type": ty, "dims": dims, "fill_bytes": fill_bytes });
    let cases = [
        (
            "wrong length",
            json!({ "model": "digits", "inputs": [input("fp32", json!([1, 64]), 255)] }),
            "invalid-argument",
            "need 256 bytes",
        ),
        (
            "overflowing dims",
            json!({ "model": "digits", "inputs": [input("fp32", json!([4294967295u32, 4294967295u32, 4294967295u32]), 16)] }),
            "invalid-argument",
            "overflow",
        ),
        (
            "wrong type",
            json!({ "model": "digits", "inputs": [input("i64", json!([1, 64]), 512)] }),
            "invalid-argument",
            "expects fp32",
        ),
        (
            "wrong rank",
            json!({ "model": "digits", "inputs": [input("fp32", json!([64]), 256)] }),
            "invalid-argument",
            "expects rank 2",
        ),
        (
            "wrong shape",
            json!({ "model": "digits", "inputs": [input("fp32", json!([1, 63]), 252)] }),
            "invalid-argument",
            "expects shape [N, 64]",
        ),
        (
            "unknown input",
            json!({ "model": "digits", "inputs": [{ "name": "y", "type": "fp32", "dims": [1, 64], "fill_bytes": 256 }] }),
            "invalid-argument",
            "no input `y`",
        ),
        ("unknown model", json!({ "model": "nope", "inputs": [] }), "not-found", "nope"),
        ("a model the function may not use", json!({ "model": "wine", "inputs": [] }), "not-found", "wine"),
        (
            "malformed model bytes",
            json!({ "model_base64": B64.encode(b"not a model"), "encoding": "onnx", "target": "cpu", "inputs": [] }),
            "invalid-encoding",
            "not a valid ONNX model",
        ),
        (
            "unsupported encoding",
            json!({ "model_base64": B64.encode(b"x"), "encoding": "ggml", "target": "cpu", "inputs": [] }),
            "invalid-encoding",
            "ONNX",
        ),
    ];
    for (what, body, code, message) in cases {
        let out = probe(&server, "probe", body).await?;
        assert_eq!(out["ok"], false, "{what}: {out}");
        assert_eq!(out["code"], code, "{what}: {out}");
        assert!(out["message"].as_str().unwrap_or_default().contains(message), "{what}: {out}");
        assert_good_request_works(&server, "probe").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_model_does_not_exist() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let key = server.create_tenant("acme").await?;
    let acme = server.with_key(&key)?;
    let pushed = server.push_model(&acme, "secret", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    assert_eq!(pushed.status(), 201);
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let out = probe(&server, "probe", json!({ "model": "secret", "inputs": [] })).await?;
    assert_eq!((out["ok"].clone(), out["code"].clone()), (json!(false), json!("not-found")), "{out}");
    // Through the API, too, another tenant's model is not there.
    let foreign_key = server.create_tenant("other").await?;
    let other = server.with_key(&foreign_key)?;
    for response in [
        other.get(server.url("/v1/models/secret")).send().await?,
        other.delete(server.url("/v1/models/secret")).send().await?,
    ] {
        assert_eq!(error_of(response).await?.0, 404);
    }
    let listed: Value = other.get(server.url("/v1/models")).send().await?.json().await?;
    assert_eq!(listed["models"], json!([]));
    let unauthenticated = muon_tests::client_with_key(None)?.get(server.url("/v1/models")).send().await?;
    assert_eq!(unauthenticated.status(), 401);
    assert_good_request_works(&server, "probe").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compute_past_the_deadline_is_stopped_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&["--nn-threads", "1"]).await?;
    let slow = generated_model("slow.onnx")?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("hurry", "fixture-nn-probe", "timeout_ms=300").await?;
    server.deploy_ok("patient", "fixture-nn-probe", "timeout_ms=60000").await?;
    let slow_input = json!({ "name": "x", "type": "fp32", "dims": [256, 1024], "fill_f32": 0.5 });
    for backend in ["tract", "onnxruntime"] {
        server.push_model_ok("slow", slow.clone(), &format!("backend={backend}")).await?;
        let started = Instant::now();
        let response = server
            .http
            .post(server.url("/fn/default/hurry"))
            .json(&json!({ "model": "slow", "inputs": [slow_input] }))
            .send()
            .await?;
        let (status, code, _) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (504, "timeout"), "{backend}");
        assert!(started.elapsed() < Duration::from_millis(1500), "{backend}: {:?}", started.elapsed());
        // With one inference thread, a compute that kept running would hold
        // up this one: it answers promptly only if the slow one was stopped.
        let started = Instant::now();
        assert_good_request_works(&server, "patient").await?;
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{backend}: the pool was still busy {:?}",
            started.elapsed()
        );
        let out = probe(&server, "patient", json!({ "model": "slow", "inputs": [slow_input] })).await?;
        assert_eq!(out["ok"], true, "{backend}: the slow model still answers: {out}");
        assert_eq!(out["outputs"][0]["dims"], json!([256, 1024]));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_records_carry_compute_time_priced_per_device() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("digits", "digits", "").await?;
    let split = digits_split()?;
    let response =
        server.http.post(server.url("/fn/default/digits")).json(&json!({ "images": split.pixels })).send().await?;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
    let records = server.usage_records(&server.http, None).await?;
    let record = records.iter().find(|r| r["request_id"] == request_id.as_str()).unwrap();
    let cpu = record["nn_cpu_us"].as_i64().unwrap_or(0);
    assert!(cpu > 0, "{record}");
    assert_eq!(record["nn_gpu_us"], 0);
    let totals: Value = server.http.get(server.url("/v1/usage?group_by=function")).send().await?.json().await?;
    assert!(totals["groups"][0]["compute_ms"].as_f64().unwrap_or(0.0) > 0.0, "{totals}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wine_csv_is_preprocessed_and_classified() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("wine", repo_file("examples/wine/wine.onnx")?, "backend=tract").await?;
    server.deploy_ok("wine", "wine", "models=wine").await?;
    server.deploy_ok("wine-preprocess", "wine-preprocess", "").await?;
    let csv = String::from_utf8(repo_file("examples/wine/test-split.csv")?)?;
    let labels: Vec<i64> = csv.lines().skip(1).filter_map(|l| l.rsplit(',').next()?.trim().parse().ok()).collect();
    let rows = csv.lines().count() - 1;

    let tensors: Value = server
        .http
        .post(server.url("/v1/functions/wine-preprocess/invoke"))
        .json(&json!({ "content_type": "text/csv", "data": csv }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(tensors["tensors"][0]["name"], "x", "{tensors}");
    assert_eq!(tensors["tensors"][0]["dimensions"], json!([rows, 13]));

    let out: Value = server
        .http
        .post(server.url("/fn/default/wine"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?
        .json()
        .await?;
    let classes: Vec<i64> = out["classes"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    assert_eq!(classes.len(), labels.len(), "{out}");
    let accuracy = classes.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64;
    let expected: Value = serde_json::from_slice(&repo_file("examples/wine/accuracy.json")?)?;
    assert!(accuracy >= expected["onnxruntime"].as_f64().unwrap_or(1.0) - 1e-9, "accuracy {accuracy}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_models_are_refused_without_a_gpu_unless_fallback_is_configured() -> anyhow::Result<()> {
    let digits = repo_file("examples/digits/digits.onnx")?;
    let server = Server::start(&[]).await?;
    for (query, message) in [("backend=tract&target=gpu", "CPU only"), ("backend=onnxruntime&target=gpu", "CUDA")] {
        let response = server.push_model(&server.http, "digits", digits.clone(), query).await?;
        let (status, code, text) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (400, "invalid_model"), "{query}: {text}");
        assert!(text.contains(message), "{query}: {text}");
    }
    let lenient = Server::start(&["--gpu-fallback-to-cpu", "true"]).await?;
    let out = lenient.push_model_ok("digits", digits, "backend=onnxruntime&target=gpu").await?;
    assert_eq!(out["target"], "cpu", "the model says where it really runs");
    assert!(lenient.logs().contains("GPU unavailable"), "the fallback is logged");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn load_from_bytes_is_bounded_and_external_data_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&["--nn-max-load-bytes", "1000"]).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let digits = repo_file("examples/digits/digits.onnx")?;
    let out = probe(
        &server,
        "probe",
        json!({ "model_base64": B64.encode(&digits), "encoding": "onnx", "target": "cpu", "inputs": [] }),
    )
    .await?;
    assert_eq!(out["code"], "too-large", "{out}");
    let external = generated_model("external-data.onnx")?;
    let response = server.push_model(&server.http, "sneaky", external, "").await?;
    let (status, code, message) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (400, "invalid_model"));
    assert!(message.contains("external data"), "{message}");
    let junk = server.push_model(&server.http, "digits", b"\x08\x07not onnx".to_vec(), "").await?;
    assert_eq!(error_of(junk).await?.1, "invalid_model");
    // A refused upload leaves the name's model as it was.
    assert_good_request_works(&server, "probe").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn load_from_bytes_runs_the_same_model() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let digits = repo_file("examples/digits/digits.onnx")?;
    let out = probe(&server, "probe", json!({ "model_base64": B64.encode(&digits), "encoding": "autodetect", "target": "cpu", "inputs": [digit_tensor()?], "repeat": 3 })).await?;
    assert_eq!(out["ok"], true, "{out}");
    assert_eq!(out["outputs"][0]["dims"], json!([1, 10]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_stays_responsive_while_models_compute() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.push_model_ok("slow", generated_model("slow.onnx")?, "backend=tract").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    server.deploy_ok("hello", "hello", "").await?;
    let slow_input = json!({ "name": "x", "type": "fp32", "dims": [256, 1024], "fill_f32": 0.5 });
    // As many slow computes as there are CPUs: every inference thread busy.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let busy: Vec<_> = (0..cpus)
        .map(|_| {
            let (http, url) = (server.http.clone(), server.url("/fn/default/probe"));
            let body = json!({ "model": "slow", "inputs": [slow_input] });
            tokio::spawn(async move { http.post(url).json(&body).send().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let started = Instant::now();
        let response = server.get_fn("hello", "").await?;
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "hello took {:?} while models computed",
            started.elapsed()
        );
    }
    for task in busy {
        let out: Value = task.await??.json().await?;
        assert_eq!(out["ok"], true, "{out}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_is_loaded_once_and_shared_by_every_function() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let pushed = server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("digits", "digits", "").await?;
    server.deploy_ok("classify", "nn-digits-http", "").await?;
    let split = digits_split()?;
    let requests = (0..16).map(|i| {
        let name = if i % 2 == 0 { "digits" } else { "classify" };
        let (http, url, pixels) =
            (server.http.clone(), server.url(&format!("/fn/default/{name}")), split.pixels[i].clone());
        tokio::spawn(async move { http.post(url).json(&json!({ "pixels": pixels })).send().await })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await??.status(), 200);
    }
    let digest = pushed["digest"].as_str().unwrap();
    let loads = server.logs().lines().filter(|line| line.contains("model loaded") && line.contains(digest)).count();
    assert_eq!(loads, 1, "one load at upload, shared by 16 requests of two functions");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_sharing_postgres_serve_each_others_models() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let first = Server::start(&["--database-url", &url]).await?;
    let second = Server::start(&["--database-url", &url]).await?;
    let second_http = muon_tests::client_with_key(Some(&first.admin_key))?;
    first.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    first.deploy_ok("digits", "digits", "models=digits").await?;
    let split = digits_split()?;
    let mut answer = Value::Null;
    for _ in 0..50 {
        let response = second_http
            .post(second.url("/fn/default/digits"))
            .json(&json!({ "pixels": split.pixels[0] }))
            .send()
            .await?;
        if response.status() == 200 {
            answer = response.json().await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer["digit"], split.labels[0], "pushed on one node, computed on the other: {answer}");
    let listed: Value = second_http.get(second.url("/v1/models")).send().await?.json().await?;
    assert_eq!(listed["models"][0]["name"], "digits");

    assert_eq!(first.http.delete(first.url("/v1/models/digits")).send().await?.status(), 200);
    let mut gone = false;
    for _ in 0..50 {
        let response = second_http.get(second.url("/v1/models/digits")).send().await?;
        if response.status() == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "a delete on one node reaches the other");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn float16_tensors_run_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "models=half").await?;
    // 1.0, 2.5, -3.0, 0.5 as little-endian IEEE half floats.
    let x: Vec<u8> = [0x3c00u16, 0x4100, 0xc200, 0x3800].iter().flat_map(|v| v.to_le_bytes()).collect();
    let doubled: Vec<u8> = [0x4000u16, 0x4500, 0xc600, 0x3c00].iter().flat_map(|v| v.to_le_bytes()).collect();
    for backend in ["tract", "onnxruntime"] {
        server.push_model_ok("half", generated_model("half.onnx")?, &format!("backend={backend}")).await?;
        let input = json!({ "name": "x", "type": "fp16", "dims": [1, 4], "data_base64": B64.encode(&x) });
        let out = probe(&server, "probe", json!({ "model": "half", "inputs": [input] })).await?;
        assert_eq!(out["ok"], true, "{backend}: {out}");
        assert_eq!(out["outputs"][0]["type"], "fp16", "{backend}: {out}");
        assert_eq!(out["outputs"][0]["data_base64"], B64.encode(&doubled), "{backend}: {out}");
    }
    Ok(())
}
