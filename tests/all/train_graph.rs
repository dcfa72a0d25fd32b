//! Training through a train-step graph (issue 12, item 3), driven by hand
//! over HTTP: the digits MLP's graphs from `examples/training` uploaded as
//! models, `functions/train-digits` deployed, and its `init`, `step` and
//! `evaluate` called through `POST /v1/functions/{name}/invoke` on a batch
//! of real digits, on both backends. The loss must fall and the figures
//! must agree with the predictions. The trained parameters then fill the
//! inference template, and `functions/digits` serves the result with the
//! same predictions. (The host-owned loop over a dataset, and the export
//! through it, are tested with the jobs.)

use muon::nn::{ElementType, HostTensor};
use muon_tests::{Server, repo_file};
use serde_json::{Value, json};

/// Rows of `examples/datasets/digits.csv` in the batch.
const ROWS: usize = 64;

/// The first `ROWS` digits as the batch tensors `x` (raw pixels) and `y`.
fn digits_batch() -> anyhow::Result<Value> {
    let text = String::from_utf8(repo_file("examples/datasets/digits.csv")?)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let label = header.iter().position(|&c| c == "target").expect("digits.csv has a `target` column");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in lines.take(ROWS) {
        for (column, field) in line.split(',').enumerate() {
            let value: f64 = field.parse()?;
            if column == label { y.push(value) } else { x.push(value) }
        }
    }
    assert_eq!((x.len(), y.len()), (ROWS * 64, ROWS));
    Ok(json!([
        { "name": "x", "dimensions": [ROWS, 64], "type": "fp32", "data": x },
        { "name": "y", "dimensions": [ROWS], "type": "i64", "data": y },
    ]))
}

fn names(tensors: &Value) -> Vec<&str> {
    tensors.as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn train_graph_steps_reduce_the_loss_on_both_backends() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("train-digits", "train-digits", "").await?;
    let invoke = |body: Value| {
        let request = server.http.post(server.url("/v1/functions/train-digits/invoke")).json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status == 200, "invoke answered {status}: {body}");
            anyhow::Ok(body)
        }
    };

    // init: He-initialised weights, zero biases and velocities, by seed.
    let init = invoke(json!({ "op": "init", "config": { "hidden": 64, "seed": 7 } })).await?;
    let initial = init["parameters"].clone();
    assert_eq!(
        names(&initial),
        ["w1", "b1", "w2", "b2", "optimizer.w1", "optimizer.b1", "optimizer.w2", "optimizer.b2"]
    );
    assert_eq!(initial[0]["dimensions"], json!([64, 64]));
    assert_eq!(initial[2]["dimensions"], json!([64, 10]));
    let w1: Vec<f64> = initial[0]["data"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    let std = (w1.iter().map(|w| w * w).sum::<f64>() / w1.len() as f64).sqrt();
    assert!((std - (2.0f64 / 64.0).sqrt()).abs() < 0.02, "w1's spread {std} is not He's sqrt(2/64)");
    let again = invoke(json!({ "op": "init", "config": { "hidden": 64, "seed": 7 } })).await?;
    assert_eq!(again["parameters"], initial, "the same seed gives the same parameters");
    let other = invoke(json!({ "op": "init", "config": { "hidden": 64, "seed": 8 } })).await?;
    assert_ne!(other["parameters"][0], initial[0]);
    let bad = server
        .http
        .post(server.url("/v1/functions/train-digits/invoke"))
        .json(&json!({ "op": "init", "config": { "hidden": 0 } }))
        .send()
        .await?
        .text()
        .await?;
    assert!(bad.contains("hidden must be from 1 to 4096"), "{bad}");

    let batch = digits_batch()?;
    let mut trained = (Value::Null, Vec::new());
    for backend in ["tract", "onnxruntime"] {
        let query = format!("backend={backend}");
        for name in ["digits-mlp-train", "digits-mlp-eval"] {
            let model = repo_file(&format!("examples/training/{name}.onnx"))?;
            let out = server.push_model_ok(name, model, &query).await?;
            assert_eq!(out["backend"], backend);
        }
        let evaluate =
            |parameters: &Value| invoke(json!({ "op": "evaluate", "parameters": parameters, "batch": batch }));
        let before = evaluate(&initial).await?;

        let mut parameters = initial.clone();
        let mut losses = Vec::new();
        for _ in 0..20 {
            let out = invoke(json!({
                "op": "step", "parameters": parameters, "batch": batch,
                "hyper_parameters": { "learning_rate": 0.1, "momentum": 0.9 }
            }))
            .await?;
            losses.push(out["loss"].as_f64().unwrap_or(f64::NAN));
            assert!(out["metrics"]["accuracy"].is_number(), "{}", out["metrics"]);
            assert_eq!(names(&out["parameters"]), names(&initial), "every parameter and velocity comes back");
            parameters = out["parameters"].clone();
        }
        // The loss of a step is the batch's before it: the first is the
        // evaluation's of the initial parameters.
        let first = before["metrics"]["loss"].as_f64().unwrap();
        assert!((losses[0] - first).abs() < 1e-4, "{backend}: step loss {} vs evaluation {first}", losses[0]);
        assert!(losses[19] < losses[0] / 4.0, "{backend}: the loss went from {} to {}", losses[0], losses[19]);

        let after = evaluate(&parameters).await?;
        let (loss, accuracy) =
            (after["metrics"]["loss"].as_f64().unwrap(), after["metrics"]["accuracy"].as_f64().unwrap());
        assert!(loss < losses[19], "{backend}: evaluation loss {loss} after the steps");
        assert!(accuracy > 0.9, "{backend}: accuracy {accuracy} on the batch it learned");
        let predictions: Vec<i64> = after["predictions"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
        let labels = batch[1]["data"].as_array().unwrap().iter().filter_map(Value::as_f64);
        let correct = predictions.iter().zip(labels).filter(|(p, y)| **p as f64 == *y).count();
        assert_eq!(predictions.len(), ROWS);
        assert!((correct as f64 / ROWS as f64 - accuracy).abs() < 1e-6, "{backend}: predictions and accuracy disagree");
        trained = (parameters, predictions);
    }

    // Export without the job loop: the trained parameters written into the
    // inference template (optimizer state left out) make a model that
    // functions/digits, unchanged, serves with the evaluation's predictions.
    let (parameters, predictions) = trained;
    let parameters: Vec<(String, HostTensor)> = parameters
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let data = t["data"].as_array().unwrap().iter().filter_map(Value::as_f64);
            let tensor = HostTensor {
                dimensions: t["dimensions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|d| d as u32)
                    .collect(),
                ty: ElementType::Fp32,
                data: data.flat_map(|v| (v as f32).to_le_bytes()).collect(),
            };
            (t["name"].as_str().unwrap().to_owned(), tensor)
        })
        .collect();
    let template = repo_file("examples/training/digits-mlp-template.onnx")?;
    let model = muon::nn::template::fill(&template, &parameters)?;
    server.push_model_ok("digits", model, "backend=onnxruntime").await?;
    server.deploy_ok("digits", "digits", "models=digits").await?;
    let images: Vec<&[Value]> = batch[0]["data"].as_array().unwrap().chunks(64).collect();
    let response = server.http.post(server.url("/fn/default/digits")).json(&json!({ "images": images })).send().await?;
    let served: Value = response.json().await?;
    let served: Vec<i64> = served["digits"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    assert_eq!(served, predictions, "the served model predicts what the evaluation graph did");
    Ok(())
}
