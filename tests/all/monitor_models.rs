//! The monitor's model side over HTTP: drift of a model a job trained
//! (`drift` names the feature), a backend that fails on valid inputs is
//! reloaded (`model_reload` in the audit log), and a model whose bytes were
//! damaged while muon was down fires `model_unloadable`, resolved when it
//! is uploaded again.
//!
//! Alerts and events are read through `GET /v1/alerts` and `GET /v1/events`
//! when the server has those routes, else straight from its database (the
//! same rows the routes serve).

use std::time::{Duration, Instant};

use base64::Engine as _;

use muon::db::Db;
use muon_tests::{B64, Backend, Server, repo_file};
use serde_json::{Value, json};

use crate::jobs::{submit, wait_over};

crate::on_both_databases!(
    a_shifted_feature_fires_drift_naming_it,
    a_backend_failing_on_valid_inputs_is_reloaded,
    a_model_damaged_between_starts_fires_unloadable,
);

/// Statistics windows this short keep the tests quick: drift compares the
/// last six windows (3 s).
const WINDOW_MS: &str = "500";

/// The drift threshold of the drift test. A shift of exactly the threshold
/// would be a coin toss (the sample's own mean is a little off the
/// training mean either way), so the 3-deviation shift the issue names is
/// judged against 2 deviations; unshifted rows stay far below either.
const DRIFT_CONFIG: &str = "[monitor.thresholds]\ndrift_sigmas = 2.0\n";

/// A server on `backend` with short windows, a handle on its database, and its flags.
async fn start(backend: Backend, extra: &[&str]) -> anyhow::Result<(Server, Db, Vec<String>)> {
    let mut flags = backend.flags()?;
    flags.extend(["--monitor-window-ms", WINDOW_MS].map(str::to_owned));
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&args).await?;
    let db = open_db(backend, &server, &flags).await?;
    Ok((server, db, flags))
}

async fn open_db(backend: Backend, server: &Server, flags: &[String]) -> anyhow::Result<Db> {
    match backend {
        Backend::Sqlite => Db::open_sqlite(&server.data_dir).await,
        Backend::Postgres => Db::connect(&flags[1]).await,
    }
}

/// The tenant's firing alerts, as `GET /v1/alerts?state=firing` lists them.
async fn firing(server: &Server, db: &Db) -> anyhow::Result<Vec<Value>> {
    let response = server.http.get(server.url("/v1/alerts?state=firing")).send().await?;
    if response.status() != 404 {
        let list: Value = response.error_for_status()?.json().await?;
        return Ok(list["alerts"].as_array().cloned().unwrap_or_default());
    }
    // The route is not there yet: the table it reads.
    let rows = db.firing_alerts().await?;
    rows.iter()
        .filter(|row| row.tenant == "default")
        .map(|row| {
            Ok(json!({"id": row.id, "state": row.state, "labels": serde_json::from_str::<Value>(&row.labels)?,
                "value": row.value, "baseline": row.baseline, "summary": row.summary}))
        })
        .collect()
}

/// The tenant's audit events of `kind`, as `GET /v1/events?kind=` lists them.
async fn events(server: &Server, db: &Db, kind: &str) -> anyhow::Result<Vec<Value>> {
    let response = server.http.get(server.url(&format!("/v1/events?kind={kind}&limit=1000"))).send().await?;
    if response.status() != 404 {
        let list: Value = response.error_for_status()?.json().await?;
        return Ok(list["events"].as_array().cloned().unwrap_or_default());
    }
    let rows = db.audit_events("default", 0, Some(kind), 1000).await?;
    rows.iter()
        .map(|row| {
            Ok(json!({"id": row.id, "kind": row.kind, "subject": row.subject, "message": row.message,
                "detail": serde_json::from_str::<Value>(&row.detail)?}))
        })
        .collect()
}

/// Polls `probe` until it answers `Some`, within `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        anyhow::ensure!(started.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `rows` (each 64 numbers) through the model `digits` with the probe.
async fn compute_rows(server: &Server, rows: &[Vec<f64>]) -> anyhow::Result<Value> {
    let data: Vec<u8> = rows.iter().flatten().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    let probe = json!({"model": "digits", "inputs": [
        {"name": "x", "type": "fp32", "dims": [rows.len(), 64], "data_base64": B64.encode(data)}]});
    server.post_json(&server.http, "/fn/default/probe", &probe).await
}

/// Trains the digits MLP for one epoch through a job that exports `digits`.
async fn train_digits(server: &Server) -> anyhow::Result<()> {
    let response = server
        .http
        .put(server.url("/v1/datasets/digits?label=target&categorical=target&stratify=true&seed=1"))
        .header("content-type", "text/csv")
        .body(repo_file("examples/datasets/digits.csv")?)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 201, "digits upload: {}", response.text().await?);
    for name in ["digits-mlp-train", "digits-mlp-eval", "digits-mlp-template"] {
        server
            .push_model_ok(name, repo_file(&format!("examples/training/{name}.onnx"))?, "backend=onnxruntime")
            .await?;
    }
    server.deploy_ok("train-digits", "train-digits", "").await?;
    let spec = json!({
        "function": "train-digits", "dataset": "digits", "epochs": 1, "batch_size": 32, "seed": 0,
        "config": {"hidden": 64}, "hyper": {"learning_rate": 0.02, "momentum": 0.9},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "export": {"model": "digits", "template": "digits-mlp-template"},
    });
    let id = submit(server, &server.http, &spec).await?;
    let job = wait_over(server, &server.http, &id).await?;
    anyhow::ensure!(job["state"] == "succeeded", "the training job: {job:#}");
    Ok(())
}

async fn a_shifted_feature_fires_drift_naming_it(backend: Backend) -> anyhow::Result<()> {
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(config.path(), DRIFT_CONFIG)?;
    let path = config.path().display().to_string();
    let (server, db, _) = start(backend, &["--config", &path]).await?;
    train_digits(&server).await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;

    // The feature to shift: the one with the widest spread in training.
    let report: Value =
        server.http.get(server.url("/v1/datasets/digits")).send().await?.error_for_status()?.json().await?;
    let columns = report["columns"].as_array().unwrap();
    let features: Vec<&Value> = columns.iter().filter(|c| c["role"] == "feature").collect();
    assert_eq!(features.len(), 64);
    let (shifted, column) = features
        .iter()
        .enumerate()
        .max_by(|a, b| a.1["stats"]["std"].as_f64().unwrap().total_cmp(&b.1["stats"]["std"].as_f64().unwrap()))
        .unwrap();
    let (name, std) = (column["name"].as_str().unwrap().to_owned(), column["stats"]["std"].as_f64().unwrap());

    let page: Value = server
        .http
        .get(server.url("/v1/datasets/digits/rows?split=train&limit=300"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let rows: Vec<Vec<f64>> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| features.iter().map(|c| row[c["name"].as_str().unwrap()].as_f64().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 300);

    // Unshifted rows, more than the minimum sample, over several windows: no alert.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let answer = compute_rows(&server, &rows).await?;
        assert_eq!(answer["ok"], true, "{answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let alerts = firing(&server, &db).await?;
    assert!(alerts.iter().all(|a| a["labels"]["detector"] != "drift"), "unshifted inputs raised {alerts:#?}");

    // The same rows with one feature three training deviations higher.
    let moved: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            row[shifted] += 3.0 * std;
            row
        })
        .collect();
    let alert = eventually(Duration::from_secs(30), "a drift alert", || async {
        compute_rows(&server, &moved).await?;
        let alerts = firing(&server, &db).await?;
        Ok(alerts.into_iter().find(|a| a["labels"]["detector"] == "drift"))
    })
    .await?;
    assert_eq!(alert["labels"]["feature"], name.as_str(), "{alert:#}");
    assert_eq!(alert["labels"]["model"], "digits");
    assert!(alert["summary"].as_str().unwrap().contains(&name), "{alert:#}");
    let drifting: Vec<Value> =
        firing(&server, &db).await?.into_iter().filter(|a| a["labels"]["detector"] == "drift").collect();
    assert_eq!(drifting.len(), 1, "only the shifted feature drifts: {drifting:#?}");

    // Back to the training distribution: the alert resolves.
    eventually(Duration::from_secs(30), "the drift alert's resolution", || async {
        compute_rows(&server, &rows).await?;
        let alerts = firing(&server, &db).await?;
        Ok(alerts.iter().all(|a| a["labels"]["detector"] != "drift").then_some(()))
    })
    .await?;
    Ok(())
}

/// Runs `x` (`dims`, filled with ones) through the model `flaky`: `(ok, code)`.
async fn compute_flaky(server: &Server, dims: [u32; 2]) -> anyhow::Result<(bool, String)> {
    let probe = json!({"model": "flaky", "inputs": [{"name": "x", "type": "fp32", "dims": dims, "fill_f32": 1.0}]});
    let answer = server.post_json(&server.http, "/fn/default/probe", &probe).await?;
    Ok((answer["ok"] == true, answer["code"].as_str().unwrap_or_default().to_owned()))
}

async fn a_backend_failing_on_valid_inputs_is_reloaded(backend: Backend) -> anyhow::Result<()> {
    let (server, db, _) = start(backend, &[]).await?;
    // Loads, and fails every compute at run time (scripts/make-fixture-models.py).
    server.push_model_ok("flaky", repo_file("tests/fixtures/runtime-fails.onnx")?, "backend=onnxruntime").await?;
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let loads = events(&server, &db, "model_load").await?;
    assert!(loads.iter().any(|e| e["subject"] == "flaky"), "the upload's load is an event: {loads:#?}");

    // The caller's mistakes are not the backend's: no reload, however many.
    for _ in 0..8 {
        assert_eq!(compute_flaky(&server, [1, 3]).await?, (false, "invalid-argument".to_owned()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(events(&server, &db, "model_reload").await?.is_empty(), "invalid arguments reloaded the model");

    // Valid inputs that the backend fails on: reloaded after five in a row, once.
    for _ in 0..5 {
        assert_eq!(compute_flaky(&server, [1, 4]).await?, (false, "runtime-error".to_owned()));
    }
    let reload = eventually(Duration::from_secs(20), "a model_reload event", || async {
        Ok(events(&server, &db, "model_reload").await?.into_iter().next())
    })
    .await?;
    assert_eq!(reload["subject"], "flaky", "{reload:#}");
    assert_eq!(reload["detail"]["reloaded"], true, "{reload:#}");
    assert_eq!(reload["detail"]["failures"], 5, "{reload:#}");
    // Failing on, within the cool-down: no second reload.
    for _ in 0..5 {
        assert_eq!(compute_flaky(&server, [1, 4]).await?, (false, "runtime-error".to_owned()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&server, &db, "model_reload").await?.len(), 1, "reloaded again within the cool-down");
    // The model's own statistics count its failed computes by code.
    let stats: Value = server.http.get(server.url("/v1/models/flaky/stats?window=1h")).send().await?.json().await?;
    let version = &stats["versions"][0];
    assert_eq!(version["version"], 1, "{stats}");
    assert!(version["outcomes"]["internal"].as_u64().is_some_and(|n| n >= 10), "{stats}");
    assert!(version["latency_ms"]["p99"].as_f64().is_some_and(|p| p >= 0.0), "{stats}");
    Ok(())
}

async fn a_model_damaged_between_starts_fires_unloadable(backend: Backend) -> anyhow::Result<()> {
    let (server, db, flags) = start(backend, &[]).await?;
    let model = repo_file("examples/digits/digits.onnx")?;
    let uploaded = server.push_model_ok("digits", model.clone(), "").await?;
    let digest = uploaded["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    server.deploy_ok("probe", "fixture-nn-probe", "").await?;
    let (data_dir, temp) = (server.data_dir.clone(), server.temp());
    server.stop().await?;
    let file = data_dir.join("models").join(format!("{digest}.onnx"));
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let probe = json!({"model": "digits", "inputs": [{"name": "x", "type": "fp32", "dims": [1, 64], "fill_f32": 1.0}]});

    if backend == Backend::Postgres {
        // Only the file damaged: the database's copy repairs it, and nothing fires.
        std::fs::write(&file, b"not a model any more")?;
        let server = Server::start_in(&data_dir, &args, temp.clone()).await?;
        let answer = server.post_json(&server.http, "/fn/default/probe", &probe).await?;
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(std::fs::read(&file)?, model, "the file is written again from the database");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let alerts = firing(&server, &db).await?;
        assert!(alerts.iter().all(|a| a["labels"]["detector"] != "model_unloadable"), "{alerts:#?}");
        server.stop().await?;
    }

    // Damage the stored bytes while muon is down, everywhere they are kept.
    std::fs::write(&file, b"not a model any more")?;
    if backend == Backend::Postgres {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&flags[1]).await?;
        let damaged = sqlx::query("UPDATE blobs SET bytes = $1 WHERE digest = $2")
            .bind(b"not a model either".to_vec())
            .bind(digest.as_str())
            .execute(&pool)
            .await?;
        assert_eq!(damaged.rows_affected(), 1);
    }
    let server = Server::start_in(&data_dir, &args, temp).await?;
    let alert = eventually(Duration::from_secs(20), "a model_unloadable alert", || async {
        let alerts = firing(&server, &db).await?;
        Ok(alerts.into_iter().find(|a| a["labels"]["detector"] == "model_unloadable"))
    })
    .await?;
    assert_eq!(alert["labels"]["model"], "digits", "{alert:#}");
    assert!(alert["summary"].as_str().unwrap().contains("digest"), "the summary says why: {alert:#}");

    // A request fails with a clear error; uploading the model again resolves the alert.
    let answer = server.post_json(&server.http, "/fn/default/probe", &probe).await?;
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("digest"), "{answer}");
    server.push_model_ok("digits", model.clone(), "").await?;
    eventually(Duration::from_secs(20), "the unloadable alert's resolution", || async {
        let alerts = firing(&server, &db).await?;
        Ok(alerts.iter().all(|a| a["labels"]["detector"] != "model_unloadable").then_some(()))
    })
    .await?;
    let answer = server.post_json(&server.http, "/fn/default/probe", &probe).await?;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(std::fs::read(&file)?, model, "the upload wrote the damaged file again");
    Ok(())
}
