//! Inference under the caller's limits: hostile models that would make the
//! host allocate far more than any function may, at upload or at compute,
//! graphs too large to load in reasonable time, and tenants that would keep
//! every inference thread to themselves.

use std::time::{Duration, Instant};

use base64::Engine as _;
use muon_tests::{B64, MIB, Server, digit_tensor, error_of, generated_model, repo_file};
use serde_json::{Value, json};

/// How far the server's peak RSS may rise while it refuses a hostile model.
/// The hostile tensors are 1 to 2 GiB; what a refusal costs (parsing a
/// model of a few bytes to 3 MB, answering) is a few MiB.
const RSS_HEADROOM: u64 = 96 * MIB;

/// Asserts that the server's peak RSS stayed within [`RSS_HEADROOM`] of
/// `before` (its RSS before the hostile request).
fn assert_peak_within_headroom(server: &Server, before: u64, what: &str) -> anyhow::Result<()> {
    let memory = server.memory()?;
    assert!(
        memory.peak_bytes < before + RSS_HEADROOM,
        "{what}: peak RSS {} MiB, RSS before {} MiB, now {} MiB",
        memory.peak_bytes / MIB,
        before / MIB,
        memory.rss_bytes / MIB
    );
    Ok(())
}

fn scalar_output(out: &Value) -> anyhow::Result<f32> {
    let bytes = B64.decode(out["outputs"][0]["data_base64"].as_str().unwrap())?;
    Ok(f32::from_le_bytes(bytes[..4].try_into()?))
}

fn i64_input(name: &str, dims: Value, n: i64) -> Value {
    json!({ "name": name, "type": "i64", "dims": dims, "data_base64": B64.encode(n.to_le_bytes()) })
}

/// ONNX Runtime keeps its arena's memory after a run the bounds size as
/// small, but hands it back after a large one: a tenant that makes a large
/// tensor once does not leave the host holding it.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_compute_gives_its_memory_back_on_onnxruntime() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "memory_mb=128").await?;
    server.push_model_ok("sized", generated_model("fill.onnx")?, "backend=onnxruntime").await?;
    let fill = |n: i64| json!({ "model": "sized", "inputs": [i64_input("n", json!([1]), n)] });
    let small = server.post_json(&server.http, "/fn/default/probe", &fill(1000)).await?;
    assert_eq!(scalar_output(&small)?, 1000.0, "{small}");
    let before = server.memory()?.rss_bytes;
    // ConstantOfShape(2^24) of float: 64 MiB, over the 16 MiB a run may leave in the arena.
    for _ in 0..3 {
        let large = server.post_json(&server.http, "/fn/default/probe", &fill(1 << 24)).await?;
        assert_eq!(large["ok"], true, "{large}");
    }
    let after = server.memory()?.rss_bytes;
    assert!(
        after < before + 32 * MIB,
        "RSS {} MiB before three 64 MiB computes, {} MiB after: the arena kept the memory",
        before / MIB,
        after / MIB
    );
    let small = server.post_json(&server.http, "/fn/default/probe", &fill(10)).await?;
    assert_eq!(scalar_output(&small)?, 10.0, "{small}");
    Ok(())
}

/// A model whose size is an input (`Range(0, n)`, `ConstantOfShape(n)`):
/// small n computes, a large n is refused before anything is allocated,
/// under the function's 64 MB, and the model keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_chosen_tensor_size_is_refused_under_the_functions_memory_limit() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "memory_mb=64").await?;
    // Range(0, n) of int64, then a float copy: 3 GiB for n = 2^28.
    // ConstantOfShape(n) of float: 1 GiB (ONNX Runtime only; tract needs
    // the shape at load, and refuses the model).
    let cases = [
        ("tract", "range.onnx", json!([])),
        ("onnxruntime", "range.onnx", json!([])),
        ("onnxruntime", "fill.onnx", json!([1])),
    ];
    for (backend, model, dims) in cases {
        server.push_model_ok("sized", generated_model(model)?, &format!("backend={backend}")).await?;
        let small = server
            .post_json(
                &server.http,
                "/fn/default/probe",
                &json!({ "model": "sized", "inputs": [i64_input("n", dims.clone(), 1000)] }),
            )
            .await?;
        assert_eq!(small["ok"], true, "{backend} {model}: {small}");
        let expected = if model == "range.onnx" { 499_500.0 } else { 1000.0 };
        assert_eq!(scalar_output(&small)?, expected, "{backend} {model}");

        let before = server.memory()?.rss_bytes;
        let huge = json!({ "model": "sized", "inputs": [i64_input("n", dims.clone(), 1 << 28)] });
        let out = server.post_json(&server.http, "/fn/default/probe", &huge).await?;
        assert_eq!(
            (out["ok"].clone(), out["code"].clone()),
            (json!(false), json!("too-large")),
            "{backend} {model}: {out}"
        );
        let message = out["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("memory limit of 64.0 MiB") && message.contains("memory_mb"),
            "{backend} {model}: {message}"
        );
        assert_peak_within_headroom(&server, before, &format!("{backend} {model}"))?;

        let again = server
            .post_json(
                &server.http,
                "/fn/default/probe",
                &json!({ "model": "sized", "inputs": [i64_input("n", dims, 10)] }),
            )
            .await?;
        assert_eq!(again["ok"], true, "{backend} {model}: the model still answers: {again}");
    }
    // A larger memory limit allows a larger tensor: the bound is the caller's.
    server.deploy_ok("roomy", "fixture-nn-probe", "memory_mb=256").await?;
    let out = server
        .post_json(
            &server.http,
            "/fn/default/roomy",
            &json!({ "model": "sized", "inputs": [i64_input("n", json!([1]), 16 << 20)] }),
        )
        .await?;
    assert_eq!(out["ok"], true, "64 MiB of floats under a 256 MB limit: {out}");
    Ok(())
}

/// Tiny models that make a 1 GiB tensor from constants alone, which every
/// backend folds at load: a constant shape, a shape computed from small
/// constants, an outer product of two Ranges, and a shape read from an
/// input's fixed dimension (over the 256 MB any function may hold here).
#[tokio::test(flavor = "multi_thread")]
async fn tiny_models_that_fold_huge_constants_are_refused_at_upload() -> anyhow::Result<()> {
    let server = Server::start(&["--max-memory-mb", "256"]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    for model in ["fold-constant.onnx", "fold-arithmetic.onnx", "fold-outer.onnx", "fold-shape.onnx"] {
        let bytes = generated_model(model)?;
        assert!(bytes.len() < 1024, "{model} is {} bytes", bytes.len());
        for backend in ["tract", "onnxruntime"] {
            let before = server.memory()?.rss_bytes;
            let response =
                server.push_model(&server.http, "bomb", bytes.clone(), &format!("backend={backend}")).await?;
            let (status, code, message) = error_of(response).await?;
            assert_eq!((status, code.as_str()), (400, "invalid_model"), "{model} on {backend}: {message}");
            assert!(
                message.contains("1.0 GiB")
                    && (message.contains("max_fold_bytes") || message.contains("max_memory_mb")),
                "{model} on {backend}: {message}"
            );
            assert_peak_within_headroom(&server, before, &format!("{model} on {backend}"))?;
        }
        // The same bytes through wasi-nn `load`.
        let before = server.memory()?.rss_bytes;
        let out = server
            .post_json(&server.http, "/fn/default/probe", &json!({ "model_base64": B64.encode(&bytes), "inputs": [] }))
            .await?;
        assert_eq!((out["stage"].clone(), out["code"].clone()), (json!("load"), json!("too-large")), "{model}: {out}");
        assert_peak_within_headroom(&server, before, &format!("{model} through wasi-nn load"))?;
    }
    // Honest models still load.
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "").await?;
    Ok(())
}

/// A graph of 100,000 nodes (tract needs minutes to load it) is refused
/// at once, by upload and by wasi-nn `load`, on both backends.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_node_chain_is_refused_at_once() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let chain = generated_model("chain.onnx")?;
    for backend in ["tract", "onnxruntime"] {
        let started = Instant::now();
        let response = server.push_model(&server.http, "chain", chain.clone(), &format!("backend={backend}")).await?;
        let (status, code, message) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (400, "invalid_model"), "{backend}: {message}");
        assert!(message.contains("100000 nodes") && message.contains("max_nodes"), "{backend}: {message}");
        assert!(started.elapsed() < Duration::from_secs(3), "{backend}: refused after {:?}", started.elapsed());
    }
    let started = Instant::now();
    let out = server
        .post_json(&server.http, "/fn/default/probe", &json!({ "model_base64": B64.encode(&chain), "inputs": [] }))
        .await?;
    assert_eq!(out["code"], "too-large", "{out}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused after {:?}", started.elapsed());
    Ok(())
}

/// With two inference threads, tenant A keeps three long computes in
/// flight; tenant B's small inferences still answer at once, because A
/// holds at most one thread.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_long_computes_leave_threads_to_another() -> anyhow::Result<()> {
    let server = Server::start(&["--nn-threads", "2"]).await?;
    let bystander = server.with_key(&server.create_tenant("bystander").await?)?;
    let pushed =
        server.push_model(&bystander, "digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    assert_eq!(pushed.status(), 201);
    server.deploy_ok_as(&bystander, "probe", "fixture-nn-probe", "").await?;
    server.deploy_ok("hog", "fixture-nn-probe", "timeout_ms=60000").await?;
    let slow_input = json!({ "name": "x", "type": "fp32", "dims": [256, 1024], "fill_f32": 0.5 });
    let small = json!({ "model": "digits", "inputs": [digit_tensor()?] });
    for backend in ["tract", "onnxruntime"] {
        server.push_model_ok("slow", generated_model("slow.onnx")?, &format!("backend={backend}")).await?;
        // Warm: the bystander's first call loads nothing after this.
        server.post_json(&bystander, "/fn/bystander/probe", &small).await?;
        let hogs: Vec<_> = (0..3)
            .map(|_| {
                let (http, url) = (server.http.clone(), server.url("/fn/default/hog"));
                let body = json!({ "model": "slow", "inputs": [slow_input] });
                tokio::spawn(async move { http.post(url).json(&body).send().await?.json::<Value>().await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let started = Instant::now();
            let out = server.post_json(&bystander, "/fn/bystander/probe", &small).await?;
            assert_eq!(out["ok"], true, "{backend}: {out}");
            slowest = slowest.max(started.elapsed());
        }
        let still_busy = hogs.iter().filter(|hog| !hog.is_finished()).count();
        assert!(still_busy > 0, "{backend}: the hog's computes ended before the bystander's, so this proves nothing");
        assert!(slowest < Duration::from_millis(500), "{backend}: the bystander waited {slowest:?} behind the hog");
        for hog in hogs {
            let out = hog.await??;
            assert_eq!(out["ok"], true, "{backend}: the hog's computes all finish: {out}");
        }
    }
    Ok(())
}

/// Loads run on threads of their own, under a deadline: a model that takes
/// long to load (15,000 nodes: about 5 s for tract on the 2-core machine;
/// allowed here by a raised node bound) is answered at the deadline, and
/// computes meanwhile do not wait for it even with a single inference thread.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_load_is_cut_at_its_deadline_and_holds_up_no_compute() -> anyhow::Result<()> {
    let flags = ["--nn-threads", "1", "--nn-load-timeout-ms", "1000", "--nn-max-nodes", "20000"];
    let server = Server::start(&flags).await?;
    server.push_model_ok("digits", repo_file("examples/digits/digits.onnx")?, "backend=tract").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let small = json!({ "model": "digits", "inputs": [digit_tensor()?] });
    server.post_json(&server.http, "/fn/default/probe", &small).await?;
    let chain = generated_model("chain-15000.onnx")?;
    let started = Instant::now();
    let upload = {
        let (http, url) = (server.http.clone(), server.url("/v1/models/chain?backend=tract"));
        tokio::spawn(async move {
            http.put(url).header("content-type", "application/octet-stream").body(chain).send().await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let compute = Instant::now();
        let out = server.post_json(&server.http, "/fn/default/probe", &small).await?;
        assert_eq!(out["ok"], true, "{out}");
        assert!(
            compute.elapsed() < Duration::from_millis(300),
            "a compute waited {:?} behind a load",
            compute.elapsed()
        );
    }
    let (status, code, message) = error_of(upload.await??).await?;
    let waited = started.elapsed();
    assert_eq!((status, code.as_str()), (400, "invalid_model"), "{message}");
    assert!(message.contains("did not load within 1000 ms"), "{message}");
    assert!(waited < Duration::from_millis(1800), "the upload was answered after {waited:?}");
    Ok(())
}
