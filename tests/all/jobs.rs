//! Training jobs over HTTP: a regression that recovers known coefficients,
//! the event stream and its resumption, ASHA, `kill -9` mid-job with the
//! same result after resuming, failing steps, cancel, the runtime limit,
//! quotas and tenancy.

use std::time::{Duration, Instant};

use muon_tests::{Backend, Server, error_of, repo_file};
use serde_json::{Value, json};

crate::on_both_databases!(
    a_regression_recovers_its_coefficients_and_streams_its_epochs,
    asha_stops_trials_that_fall_behind,
    tpe_draws_later_trials_from_the_finished_ones,
    a_trapping_step_is_retried_then_fails_the_job,
    cancel_runtime_limits_quotas_and_tenancy,
    the_digits_mlp_trains_through_wasi_nn_and_is_served,
);

/// The coefficients the synthetic dataset is made with: `y = 2 x1 - 3 x2 + 0.5 x3 + 1`.
const COEFFICIENTS: [f64; 3] = [2.0, -3.0, 0.5];
const INTERCEPT: f64 = 1.0;

/// `rows` rows of `x1,x2,x3,y` from a fixed sequence, without noise.
pub fn linear_csv(rows: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut csv = String::from("x1,x2,x3,y\n");
    for _ in 0..rows {
        let x = [unit(), unit(), unit()];
        let y = x.iter().zip(COEFFICIENTS).map(|(a, b)| a * b).sum::<f64>() + INTERCEPT;
        csv.push_str(&format!("{:.6},{:.6},{:.6},{:.6}\n", x[0], x[1], x[2], y));
    }
    csv.into_bytes()
}

/// Deploys train-linear and uploads the synthetic dataset as `linear`.
pub async fn linear_setup(server: &Server) -> anyhow::Result<()> {
    server.deploy_ok("train-linear", "train-linear", "").await?;
    upload_linear(server, "linear", 400, "0.8,0.1,0.1").await
}

/// Uploads `rows` rows of the synthetic dataset as `name`, split as `split`.
async fn upload_linear(server: &Server, name: &str, rows: usize, split: &str) -> anyhow::Result<()> {
    let response = server
        .http
        .put(server.url(&format!("/v1/datasets/{name}?label=y&split={split}&seed=3")))
        .header("content-type", "text/csv")
        .body(linear_csv(rows))
        .send()
        .await?;
    anyhow::ensure!(response.status() == 201, "dataset upload: {}", response.text().await?);
    Ok(())
}

/// The spec of a train-linear job on `linear`.
pub fn linear_spec(epochs: u32, extra: Value) -> Value {
    let mut spec = json!({
        "function": "train-linear", "dataset": "linear", "epochs": epochs, "batch_size": 16, "seed": 7,
        "config": {"features": 3}, "hyper": {"learning_rate": 0.1},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// `POST /v1/jobs`; must answer `201`; returns the id.
pub async fn submit(server: &Server, client: &reqwest::Client, spec: &Value) -> anyhow::Result<String> {
    let response = client.post(server.url("/v1/jobs")).json(spec).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 201, "POST /v1/jobs answered {status}: {body}");
    assert_eq!(body["state"], "queued");
    Ok(body["id"].as_str().unwrap_or_default().to_owned())
}

/// `GET /v1/jobs/{id}` until `done` holds of it, within `limit`.
pub async fn wait_until(
    server: &Server,
    client: &reqwest::Client,
    id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let job: Value =
            client.get(server.url(&format!("/v1/jobs/{id}"))).send().await?.error_for_status()?.json().await?;
        if done(&job) {
            return Ok(job);
        }
        anyhow::ensure!(started.elapsed() < limit, "job {id} did not get there within {limit:?}: {job:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the job to be over.
pub async fn wait_over(server: &Server, client: &reqwest::Client, id: &str) -> anyhow::Result<Value> {
    wait_until(server, client, id, Duration::from_secs(120), |job| {
        !matches!(job["state"].as_str(), Some("queued" | "running"))
    })
    .await
}

/// The whole event stream of an ended job, after `last_event_id`: `(id, event)` pairs.
async fn events(server: &Server, id: &str, last_event_id: Option<i64>) -> anyhow::Result<Vec<(i64, Value)>> {
    let mut request = server.http.get(server.url(&format!("/v1/jobs/{id}/events")));
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last.to_string());
    }
    let response = request.send().await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(30), response.text()).await??;
    let mut out = Vec::new();
    // Comments (`: keep-alive`) carry no event.
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty() && !b.starts_with(':')) {
        let mut seq = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                seq = Some(v.parse::<i64>()?);
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(v)?);
            }
        }
        out.push((seq.ok_or_else(|| anyhow::anyhow!("an event without id: {block}"))?, data.unwrap_or(Value::Null)));
    }
    Ok(out)
}

/// A trial's parameters by name, as numbers.
async fn parameters(server: &Server, id: &str) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    let body: Value = server
        .http
        .get(server.url(&format!("/v1/jobs/{id}/parameters")))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let values = t["data"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            (t["name"].as_str().unwrap_or_default().to_owned(), values)
        })
        .collect())
}

async fn a_regression_recovers_its_coefficients_and_streams_its_epochs(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    linear_setup(&server).await?;
    let epochs = 25;
    let id = submit(&server, &server.http, &linear_spec(epochs, json!({}))).await?;
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["trials"][0]["epoch"], epochs);
    assert_eq!(job["best_trial"], 0);
    let found = parameters(&server, &id).await?;
    let w = &found.iter().find(|(n, _)| n == "w").unwrap().1;
    let b = found.iter().find(|(n, _)| n == "b").unwrap().1[0];
    for (got, want) in w.iter().zip(COEFFICIENTS) {
        assert!((got - want).abs() < 1e-2, "w = {w:?}, expected {COEFFICIENTS:?}");
    }
    assert!((b - INTERCEPT).abs() < 1e-2, "b = {b}");

    // The report: one curve point per epoch, the loss falling, test figures.
    let report: Value =
        server.http.get(server.url(&format!("/v1/jobs/{id}/report"))).send().await?.error_for_status()?.json().await?;
    let loss = report["trials"][0]["curves"]["loss"].as_array().unwrap();
    assert_eq!(loss.len(), epochs as usize, "{report:#}");
    assert!(loss.last().unwrap().as_f64().unwrap() < loss[0].as_f64().unwrap() / 100.0, "{loss:?}");
    assert!(report["test"]["metrics"]["loss"].as_f64().unwrap() < 1e-3, "{report:#}");
    assert_eq!(report["test"]["rows"], 40);
    assert!(report["test"].get("confusion").is_none(), "a regression has no confusion matrix");
    assert!(report["cpu_time_s"].as_f64().unwrap() > 0.0 && report["wall_time_s"].as_f64().unwrap() > 0.0);
    let svg = server.http.get(server.url(&format!("/v1/jobs/{id}/report.svg"))).send().await?;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await?;
    assert!(svg.starts_with("<svg") && svg.contains("val_loss") && svg.contains("<polyline"), "{svg}");

    // The stream: the job's states and one event per epoch, numbered 1, 2, ...
    let all = events(&server, &id, None).await?;
    let seqs: Vec<i64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    let epoch_events: Vec<&Value> = all.iter().map(|(_, e)| e).filter(|e| e["type"] == "epoch").collect();
    assert_eq!(epoch_events.len(), epochs as usize);
    assert_eq!(
        epoch_events.iter().map(|e| e["epoch"].as_u64().unwrap()).collect::<Vec<_>>(),
        (1..=u64::from(epochs)).collect::<Vec<_>>()
    );
    assert!(epoch_events[0]["metrics"]["val_loss"].is_number() && epoch_events[0]["metrics"]["val_mae"].is_number());
    assert_eq!(all.first().unwrap().1, json!({"type": "job", "state": "queued"}));
    assert_eq!(all.last().unwrap().1, json!({"type": "job", "state": "succeeded"}));
    // Resuming after event 10 gives the rest, no gap and no repeat.
    let rest = events(&server, &id, Some(10)).await?;
    assert_eq!(rest, all[10..].to_vec());

    // The bill: usage records for the job's work, with CPU time.
    let records = server.usage_records(&server.http, None).await?;
    let job_records: Vec<&Value> =
        records.iter().filter(|r| r["request_id"].as_str().is_some_and(|i| i.starts_with(&id))).collect();
    assert!(!job_records.is_empty(), "no usage records for the job");
    assert!(job_records.iter().all(|r| r["function"] == "train-linear" && r["outcome"] == "ok"));
    assert!(job_records.iter().map(|r| r["cpu_us"].as_i64().unwrap_or(0)).sum::<i64>() > 0);
    // One record per checkpoint interval (every epoch here), and one for the test split.
    assert_eq!(job_records.len(), epochs as usize + 1);

    // Listed, then deleted with everything it kept.
    let list: Value = server.http.get(server.url("/v1/jobs")).send().await?.json().await?;
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let deleted = server.http.delete(server.url(&format!("/v1/jobs/{id}"))).send().await?;
    assert_eq!(deleted.status(), 200);
    let (status, code, _) = error_of(server.http.get(server.url(&format!("/v1/jobs/{id}"))).send().await?).await?;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    Ok(())
}

async fn asha_stops_trials_that_fall_behind(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &["--jobs-workers", "2"]).await?;
    linear_setup(&server).await?;
    let spec = linear_spec(
        9,
        json!({
            "hyper": {"learning_rate": {"log_uniform": [0.0001, 0.2]}},
            "search": {"method": "random", "trials": 6, "parallel": 2,
                       "early_stopping": {"asha": {"grace_epochs": 1, "reduction_factor": 3}}},
            "objective": {"metric": "val_loss", "mode": "min"},
        }),
    );
    let id = submit(&server, &server.http, &spec).await?;
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let trials = job["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    let stopped: Vec<&Value> = trials.iter().filter(|t| t["state"] == "stopped").collect();
    assert!(!stopped.is_empty(), "ASHA stopped no trial: {job:#}");
    assert!(stopped.iter().all(|t| t["epoch"].as_u64().unwrap() < 9), "{job:#}");
    assert!(trials.iter().any(|t| t["state"] == "succeeded" && t["epoch"] == 9), "{job:#}");
    // The best trial is the one with the lowest val_loss among them.
    let best = job["best_trial"].as_u64().unwrap() as usize;
    let best_loss = trials[best]["metrics"]["val_loss"].as_f64().unwrap();
    assert!(trials.iter().filter_map(|t| t["metrics"]["val_loss"].as_f64()).all(|l| l >= best_loss));
    Ok(())
}

async fn tpe_draws_later_trials_from_the_finished_ones(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    linear_setup(&server).await?;
    let spec = linear_spec(
        4,
        json!({
            "hyper": {"learning_rate": {"log_uniform": [0.0001, 0.3]}, "unused": {"choice": [1, 2, 3]}},
            "search": {"method": "tpe", "trials": 8, "parallel": 1},
        }),
    );
    let id = submit(&server, &server.http, &spec).await?;
    let queued: Value = server.http.get(server.url(&format!("/v1/jobs/{id}"))).send().await?.json().await?;
    let drawn_at_submission = queued["trials"].as_array().unwrap().iter().filter(|t| t["hyper"] != json!({})).count();
    assert_eq!(drawn_at_submission, 2, "the random start: {queued:#}");
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    for trial in job["trials"].as_array().unwrap() {
        let lr = trial["hyper"]["learning_rate"].as_f64().unwrap();
        assert!((0.0001..=0.3).contains(&lr), "{trial:#}");
        assert!([1.0, 2.0, 3.0].contains(&trial["hyper"]["unused"].as_f64().unwrap()), "{trial:#}");
        assert_eq!(trial["state"], "succeeded");
    }
    Ok(())
}

async fn a_trapping_step_is_retried_then_fails_the_job(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    linear_setup(&server).await?;
    server.deploy_ok("trap", "fixture-train-trap", "").await?;
    let spec =
        json!({"function": "trap", "dataset": "linear", "epochs": 3, "max_retries": 2, "hyper": {"trap_after": 4}});
    let id = submit(&server, &server.http, &spec).await?;
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "failed", "{job:#}");
    let trial = &job["trials"][0];
    assert_eq!((trial["state"].as_str(), trial["attempt"].as_u64()), (Some("failed"), Some(3)), "{job:#}");
    let error = trial["error"].as_str().unwrap();
    assert!(error.contains("trapped on purpose"), "{error}");
    assert!(job["error"].as_str().unwrap().contains("trial 0 failed"), "{job:#}");
    // Each retry is in the stream with the error that caused it.
    let all = events(&server, &id, None).await?;
    let retries = all
        .iter()
        .filter(|(_, e)| e["type"] == "trial" && e["error"].as_str().is_some_and(|m| m.contains("retrying")))
        .count();
    assert_eq!(retries, 2, "{all:#?}");
    // What the guest printed is in the trial's log.
    let logs: Value = server.http.get(server.url(&format!("/v1/jobs/{id}/logs"))).send().await?.json().await?;
    assert!(logs["trials"][0]["stdout"].as_str().unwrap().contains("about to trap after 4 steps"), "{logs:#}");
    // Failed attempts are billed, with the error as their outcome.
    let records = server.usage_records(&server.http, None).await?;
    let failed = records
        .iter()
        .filter(|r| r["request_id"].as_str().is_some_and(|i| i.starts_with(&id)) && r["outcome"] == "trap")
        .count();
    assert_eq!(failed, 3, "one trap record per attempt");
    Ok(())
}

async fn cancel_runtime_limits_quotas_and_tenancy(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    linear_setup(&server).await?;
    // Cancel: the job ends at once, its trial too, and it cannot be cancelled twice.
    let id = submit(&server, &server.http, &linear_spec(100_000, json!({}))).await?;
    wait_until(&server, &server.http, &id, Duration::from_secs(60), |job| {
        job["trials"][0]["epoch"].as_u64() >= Some(1)
    })
    .await?;
    let cancelled: Value = server.http.post(server.url(&format!("/v1/jobs/{id}/cancel"))).send().await?.json().await?;
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["trials"][0]["state"], "cancelled");
    let (status, code, _) =
        error_of(server.http.post(server.url(&format!("/v1/jobs/{id}/cancel"))).send().await?).await?;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let epoch = cancelled["trials"][0]["epoch"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = wait_over(&server, &server.http, &id).await?;
    assert!(later["trials"][0]["epoch"].as_u64().unwrap() <= epoch + 1, "a cancelled trial stopped: {later:#}");

    // The runtime limit.
    let id = submit(&server, &server.http, &linear_spec(100_000, json!({"max_runtime_s": 1}))).await?;
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "timed_out", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("max_runtime_s"), "{job:#}");

    // Spec errors name the field.
    for (spec, field) in [
        (linear_spec(0, json!({})), "`epochs`"),
        (json!({"function": "nope", "dataset": "linear", "epochs": 1}), "`function`"),
        (json!({"function": "train-linear", "dataset": "nope", "epochs": 1}), "`dataset`"),
        (linear_spec(1, json!({"hyper": {"learning_rate": {"log_uniform": [0, 1]}}})), "`hyper.learning_rate`"),
        (linear_spec(1, json!({"epoch": 3})), "epoch"),
    ] {
        let (status, code, message) =
            error_of(server.http.post(server.url("/v1/jobs")).json(&spec).send().await?).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{spec}: {message}");
        assert!(message.contains(field), "{spec}: {message}");
    }

    // Quotas: jobs at once, and trials at once.
    let key = server.create_tenant("trainer").await?;
    let quotas = json!({"max_concurrent_jobs": 1, "max_trial_parallelism": 2});
    server.http.put(server.url("/v1/tenants/trainer/quotas")).json(&quotas).send().await?.error_for_status()?;
    let trainer = server.with_key(&key)?;
    let component = muon_tests::component("train-linear")?;
    trainer.put(server.url("/v1/functions/train-linear")).body(component).send().await?.error_for_status()?;
    trainer
        .put(server.url("/v1/datasets/linear?label=y"))
        .header("content-type", "text/csv")
        .body(linear_csv(100))
        .send()
        .await?
        .error_for_status()?;
    let wide = linear_spec(1, json!({"search": {"trials": 4, "parallel": 3}}));
    let (status, code, message) = error_of(trainer.post(server.url("/v1/jobs")).json(&wide).send().await?).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{message}");
    let long = submit(&server, &trainer, &linear_spec(100_000, json!({}))).await?;
    let (status, code, message) =
        error_of(trainer.post(server.url("/v1/jobs")).json(&linear_spec(1, json!({}))).send().await?).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{message}");

    // Another tenant's job is 404 on every route.
    for (method, path) in [
        ("GET", format!("/v1/jobs/{long}")),
        ("GET", format!("/v1/jobs/{long}/events")),
        ("GET", format!("/v1/jobs/{long}/logs")),
        ("GET", format!("/v1/jobs/{long}/report")),
        ("GET", format!("/v1/jobs/{long}/report.svg")),
        ("GET", format!("/v1/jobs/{long}/parameters")),
        ("POST", format!("/v1/jobs/{long}/cancel")),
        ("DELETE", format!("/v1/jobs/{long}")),
    ] {
        let request = server.http.request(method.parse()?, server.url(&path));
        let (status, code, _) = error_of(request.send().await?).await?;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{method} {path}");
    }
    let theirs: Value = server.http.get(server.url("/v1/jobs")).send().await?.json().await?;
    assert!(theirs["jobs"].as_array().unwrap().iter().all(|j| j["id"] != long.as_str()));
    trainer.post(server.url(&format!("/v1/jobs/{long}/cancel"))).send().await?.error_for_status()?;
    Ok(())
}

async fn the_digits_mlp_trains_through_wasi_nn_and_is_served(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let response = server
        .http
        .put(server.url("/v1/datasets/digits?label=target&categorical=target&stratify=true&seed=1"))
        .header("content-type", "text/csv")
        .body(repo_file("examples/datasets/digits.csv")?)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 201, "digits upload: {}", response.text().await?);
    for name in ["digits-mlp-train", "digits-mlp-eval", "digits-mlp-template"] {
        let model = repo_file(&format!("examples/training/{name}.onnx"))?;
        server.push_model_ok(name, model, "backend=onnxruntime").await?;
    }
    server.deploy_ok("train-digits", "train-digits", "").await?;
    let spec = json!({
        "function": "train-digits", "dataset": "digits", "epochs": 20, "batch_size": 32, "seed": 0,
        "config": {"hidden": 64},
        "hyper": {"learning_rate": 0.02, "momentum": 0.9},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "export": {"model": "digits", "template": "digits-mlp-template"},
    });
    let id = submit(&server, &server.http, &spec).await?;
    let job = wait_over(&server, &server.http, &id).await?;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let report: Value =
        server.http.get(server.url(&format!("/v1/jobs/{id}/report"))).send().await?.error_for_status()?.json().await?;
    let accuracy = report["test"]["metrics"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "test accuracy {accuracy}: {report:#}");
    let confusion = report["test"]["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion.iter().flat_map(|row| row.as_array().unwrap()).filter_map(Value::as_u64).sum();
    assert_eq!(total, report["test"]["rows"].as_u64().unwrap());
    let diagonal: u64 = (0..10).filter_map(|i| confusion[i][i].as_u64()).sum();
    assert!(
        (diagonal as f64 / total as f64 - accuracy).abs() < 1e-6,
        "the matrix ({diagonal}/{total}) and the accuracy ({accuracy}) disagree"
    );
    assert!(report["nn_cpu_time_s"].as_f64().unwrap() > 0.0, "the math ran on the backend: {report:#}");
    assert_eq!(report["exported"]["model"], "digits");

    // The exported model, served by functions/digits unchanged, predicts the
    // test split as the trial's own evaluation did.
    let model: Value =
        server.http.get(server.url("/v1/models/digits")).send().await?.error_for_status()?.json().await?;
    assert_eq!(model["version"], report["exported"]["version"]);
    assert_eq!(model["job"], id.as_str(), "the model links back to the job that made it");
    server.deploy_ok("digits", "digits", "").await?;
    let rows: Value = server
        .http
        .get(server.url("/v1/datasets/digits/rows?split=test&limit=1000"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    // Pixels in the file's column order, which the model was trained on.
    let csv = String::from_utf8(repo_file("examples/datasets/digits.csv")?)?;
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').filter(|c| *c != "target").collect();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for row in rows["rows"].as_array().unwrap() {
        labels.push(row["target"].as_i64().unwrap());
        images.push(header.iter().map(|c| row[*c].as_f64().unwrap()).collect::<Vec<_>>());
    }
    assert_eq!(images.len() as u64, report["test"]["rows"].as_u64().unwrap());
    let answer = server.post_json(&server.http, "/fn/default/digits", &json!({"images": images})).await?;
    let predicted = answer["digits"].as_array().unwrap();
    let correct = predicted.iter().zip(&labels).filter(|(p, l)| p.as_i64() == Some(**l)).count();
    let served = correct as f64 / labels.len() as f64;
    assert!((served - accuracy).abs() <= 0.005, "served accuracy {served}, the trial's evaluation {accuracy}");
    Ok(())
}

/// Each trial's curve of `metric` from the report, and the final parameters.
async fn outcome(server: &Server, id: &str) -> anyhow::Result<(Vec<Value>, Vec<(String, Vec<f64>)>)> {
    let report: Value =
        server.http.get(server.url(&format!("/v1/jobs/{id}/report"))).send().await?.error_for_status()?.json().await?;
    let curves = report["trials"].as_array().unwrap().iter().map(|t| t["curves"].clone()).collect();
    Ok((curves, parameters(server, id).await?))
}

/// `kill -9` mid-job: after a restart the trial resumes from its last
/// checkpoint, no epoch is repeated or billed twice, and the result equals
/// that of the same job run without a crash.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_killed_mid_run_resumes_to_the_same_result() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    linear_setup(&server).await?;
    // A call a batch, and enough epochs, keep the job running for a second
    // or more, so that the kill lands mid-run (150 epochs of 20 batches a
    // call once took 90 ms).
    let epochs = 1000;
    let spec = linear_spec(epochs, json!({"steps_per_call": 1, "hyper": {"learning_rate": 0.01}}));
    let id = submit(&server, &server.http, &spec).await?;
    let midway = |job: &Value| job["trials"][0]["epoch"].as_u64().is_some_and(|e| e >= 10);
    let before = wait_until(&server, &server.http, &id, Duration::from_secs(60), midway).await?;
    server.signal("KILL")?;
    server.wait(Duration::from_secs(10)).await?;
    let killed_at = before["trials"][0]["epoch"].as_u64().unwrap();
    assert!(killed_at < u64::from(epochs), "the job ended before the kill: {before:#}");

    let server = Server::start_in(&server.data_dir.clone(), &[], server.temp()).await?;
    let resumed = wait_over(&server, &server.http, &id).await?;
    assert_eq!(resumed["state"], "succeeded", "{resumed:#}");
    let again = submit(&server, &server.http, &spec).await?;
    assert_eq!(wait_over(&server, &server.http, &again).await?["state"], "succeeded");

    let (curves, parameters) = outcome(&server, &id).await?;
    let (uninterrupted_curves, uninterrupted) = outcome(&server, &again).await?;
    assert_eq!(curves[0]["loss"].as_array().unwrap().len(), epochs as usize, "no epoch is repeated or lost");
    assert_eq!(curves, uninterrupted_curves, "the same curves as without the crash");
    assert_eq!(parameters, uninterrupted, "the same parameters as without the crash");
    let records = server.usage_records(&server.http, None).await?;
    let billed = records.iter().filter(|r| r["request_id"].as_str().is_some_and(|i| i.starts_with(&id))).count();
    assert_eq!(billed, epochs as usize + 1, "one record per checkpoint interval and one for the test split");
    Ok(())
}

/// On PostgreSQL any node runs trials; a node killed mid-job loses its
/// leases, and the other node resumes its trial from the checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn another_node_finishes_the_trials_of_a_killed_one() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let flags = ["--database-url", &url, "--jobs-workers", "1", "--jobs-lease-ms", "1500", "--jobs-poll-ms", "200"];
    let mut first = Server::start(&flags).await?;
    let second = Server::start(&flags).await?;
    linear_setup(&first).await?;
    let epochs = 200;
    // A call a batch keeps the trials running well past the kill.
    let extra = json!({"search": {"trials": 2, "parallel": 2}, "steps_per_call": 1, "hyper": {"learning_rate": 0.01}});
    let spec = linear_spec(epochs, extra);
    let id = submit(&first, &first.http, &spec).await?;
    // One worker each: each node holds one of the two trials.
    let both =
        |job: &Value| job["trials"].as_array().unwrap().iter().all(|t| t["epoch"].as_u64().is_some_and(|e| e >= 5));
    wait_until(&first, &first.http, &id, Duration::from_secs(60), both).await?;
    first.signal("KILL")?;
    first.wait(Duration::from_secs(10)).await?;
    let second_http = muon_tests::client_with_key(Some(&first.admin_key))?;
    let job = wait_until(&second, &second_http, &id, Duration::from_secs(120), |job| {
        !matches!(job["state"].as_str(), Some("queued" | "running"))
    })
    .await?;
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let report: Value = second_http.get(second.url(&format!("/v1/jobs/{id}/report"))).send().await?.json().await?;
    for trial in report["trials"].as_array().unwrap() {
        assert_eq!(trial["state"], "succeeded");
        assert_eq!(trial["curves"]["loss"].as_array().unwrap().len(), epochs as usize, "no epoch repeated: {trial:#}");
    }
    Ok(())
}

/// With a checkpoint every 3 epochs, the work is billed once per interval
/// (and the last, shorter one) and every epoch still reaches the stream.
#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_intervals_bill_once_each_and_lose_no_epoch() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    linear_setup(&server).await?;
    let id = submit(&server, &server.http, &linear_spec(7, json!({"checkpoint_every_epochs": 3}))).await?;
    assert_eq!(wait_over(&server, &server.http, &id).await?["state"], "succeeded");
    let all = events(&server, &id, None).await?;
    let epochs: Vec<u64> =
        all.iter().filter(|(_, e)| e["type"] == "epoch").filter_map(|(_, e)| e["epoch"].as_u64()).collect();
    assert_eq!(epochs, (1..=7).collect::<Vec<_>>());
    let records = server.usage_records(&server.http, None).await?;
    let mut ids: Vec<&str> =
        records.iter().filter_map(|r| r["request_id"].as_str()).filter(|i| i.starts_with(&id)).collect();
    ids.sort_unstable();
    let expected = [":0:3:1", ":0:6:1", ":0:7:1", ":0:test"].map(|tail| format!("{id}{tail}"));
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    Ok(())
}

/// A call of `steps` trains on many batches (the spec's `steps_per_call`,
/// 64 by default) and gives exactly what a call per batch gives: the same
/// curves and parameters, with far fewer sandboxed calls.
#[tokio::test(flavor = "multi_thread")]
async fn batches_trained_many_a_call_give_what_one_a_call_gives() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    linear_setup(&server).await?;
    // 320 training rows in batches of 16: 20 steps an epoch.
    let epochs = 5;
    let mut runs = Vec::new();
    for extra in [json!({"steps_per_call": 1}), json!({})] {
        let before = instantiations(&server).await?;
        let id = submit(&server, &server.http, &linear_spec(epochs, extra)).await?;
        assert_eq!(wait_over(&server, &server.http, &id).await?["state"], "succeeded");
        let calls = instantiations(&server).await? - before;
        runs.push((calls, outcome(&server, &id).await?));
    }
    let [(one_a_call, single), (many_a_call, batched)] = <[_; 2]>::try_from(runs).unwrap();
    assert_eq!(single, batched, "the same curves and parameters whatever the batches per call");
    assert!(one_a_call >= 20 * u64::from(epochs), "a call per batch: {one_a_call} calls");
    // `init`, a call per epoch (one more for the first, whose first call
    // takes one batch to find the pace), the validations and the test.
    assert!(many_a_call <= 3 * u64::from(epochs) + 3, "{many_a_call} calls for {} steps", 20 * epochs);
    Ok(())
}

/// Instances made so far by the server (`muon_instantiate_seconds_count`).
async fn instantiations(server: &Server) -> anyhow::Result<u64> {
    let text = server.http.get(server.url("/metrics")).send().await?.error_for_status()?.text().await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("muon_instantiate_seconds_count "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0))
}

/// The validation split is evaluated every epoch. It is held in memory when
/// it fits in a sixteenth of the function's memory, and read again at each
/// evaluation when it does not; either way the curves and parameters are
/// the same. Here 9,000 validation rows of 16 bytes (144 KB) fit the budget
/// of a function with 64 MiB but not of one with 2 MiB (128 KiB).
#[tokio::test(flavor = "multi_thread")]
async fn a_validation_split_held_or_read_each_epoch_gives_the_same_curves() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    upload_linear(&server, "wide", 20_000, "0.5,0.45,0.05").await?;
    let mut outcomes = Vec::new();
    for (name, memory) in [("held", 64), ("read", 2)] {
        server.deploy_ok(name, "train-linear", &format!("memory_mb={memory}")).await?;
        let spec = linear_spec(2, json!({"function": name, "dataset": "wide", "batch_size": 256}));
        let id = submit(&server, &server.http, &spec).await?;
        let job = wait_over(&server, &server.http, &id).await?;
        assert_eq!(job["state"], "succeeded", "{job:#}");
        outcomes.push(outcome(&server, &id).await?);
    }
    let [(held_curves, held), (read_curves, read)] = <[_; 2]>::try_from(outcomes).unwrap();
    assert!(held_curves.iter().all(|event| event.to_string().contains("val_loss")), "{held_curves:?}");
    assert_eq!(held_curves, read_curves, "the same validation figures however the split is read");
    assert_eq!(held, read, "the same parameters");
    Ok(())
}
