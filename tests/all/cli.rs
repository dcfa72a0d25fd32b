//! The CLI speaks the HTTP API.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use muon_tests::{Server, muon_bin, target_dir};

/// `muon` speaking to `server` with its admin key.
fn muon_command(server: &Server) -> Command {
    let mut command = Command::new(muon_bin());
    command.env("MUON_SERVER", &server.base).env("MUON_DATA_DIR", &server.data_dir).env_remove("MUON_API_KEY");
    command
}

fn muon(server: &Server, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Output> {
    let mut child =
        muon_command(server).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default())?;
    }
    Ok(child.wait_with_output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_invoke_list_and_rollback_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let guest = target_dir().join("wasm32-wasip2/guest");
    let hello = guest.join("hello.wasm").display().to_string();
    let transform = guest.join("json_transform.wasm").display().to_string();

    let out = muon(&server, &["deploy", "greet", &hello, "--memory-mb", "64"], None)?;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("deployed greet version 1 (handler"), "{}", stdout(&out));

    let out = muon(&server, &["deploy", "greet", &transform, "--json"], None)?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(json["version"], 2);

    let out = muon(&server, &["invoke", "greet", "--data", r#"{"values":[1,3]}"#], None)?;
    assert!(stdout(&out).contains("\"mean\":2.0"), "{}", stdout(&out));
    let input = std::env::temp_dir().join(format!("muon-cli-{}.json", std::process::id()));
    std::fs::write(&input, r#"{"values":[5]}"#)?;
    let out = muon(&server, &["invoke", "greet", "--data", &format!("@{}", input.display())], None)?;
    assert!(stdout(&out).contains("\"count\":1"), "{}", stdout(&out));
    let out = muon(&server, &["invoke", "greet", "--data", "-"], Some(br#"{"values":[1,2,3,4]}"#))?;
    assert!(stdout(&out).contains("\"count\":4"), "{}", stdout(&out));

    let out = muon(&server, &["functions"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("greet") && l.contains("handler")), "{}", stdout(&out));

    let out = muon(&server, &["rollback", "greet"], None)?;
    assert_eq!(stdout(&out).trim(), "greet is now at version 1");
    let out = muon(&server, &["invoke", "greet"], None)?;
    assert_eq!(stdout(&out), "hello, world!\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_exit_non_zero_with_one_line() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let out = muon(&server, &["invoke", "missing"], None)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("404 not_found"), "{stderr}");
    let out = muon(&server, &["deploy", "x", "/no/such/file.wasm"], None)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_keys_and_usage_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let out = muon(&server, &["tenants", "create", "acme"], None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let key = text.lines().find_map(|l| l.split("(shown once): ").nth(1)).unwrap_or_default().trim().to_owned();
    assert!(key.starts_with("muon_sk_"), "{text}");

    // The tenant's own key, from MUON_API_KEY.
    let guest = target_dir().join("wasm32-wasip2/guest/hello.wasm").display().to_string();
    let mut acme = Command::new(muon_bin());
    acme.env("MUON_SERVER", &server.base).env("MUON_API_KEY", &key);
    let deployed = acme.args(["deploy", "hi", &guest]).output()?;
    assert!(deployed.status.success(), "{deployed:?}");
    let listed = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", &key)
        .arg("functions")
        .output()?;
    assert!(stdout(&listed).contains("hi"));
    let invoked = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", &key)
        .args(["invoke", "hi"])
        .output()?;
    assert_eq!(stdout(&invoked), "hello, world!\n");

    let usage = muon(&server, &["usage", "--tenant", "acme", "--csv"], None)?;
    let csv = stdout(&usage);
    assert!(csv.starts_with("group,requests,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("hi,1,")), "{csv}");

    let issued = muon(&server, &["keys", "create", "--tenant", "acme", "--json"], None)?;
    let issued: serde_json::Value = serde_json::from_slice(&issued.stdout)?;
    let id = issued["id"].as_str().unwrap();
    let revoked = muon(&server, &["keys", "revoke", id], None)?;
    assert_eq!(stdout(&revoked).trim(), format!("revoked {id}"));
    let denied = Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_API_KEY", issued["key"].as_str().unwrap())
        .arg("functions")
        .output()?;
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("401 unauthorized"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_pushed_listed_used_and_deleted_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/digits/digits.onnx");
    let model = model.display().to_string();
    let out = muon(&server, &["models", "push", "digits", &model, "--backend", "tract"], None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("pushed model digits (") && text.contains("tract on cpu"), "{text}");
    assert!(text.contains(r#"x fp32 ["N",64]"#), "{text}");

    let out = muon(&server, &["models"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("digits") && l.contains("tract")), "{}", stdout(&out));

    let digits = target_dir().join("wasm32-wasip2/guest/digits.wasm").display().to_string();
    let out = muon(&server, &["deploy", "digits", &digits, "--models", "digits", "--json"], None)?;
    let deployed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(deployed["models"], serde_json::json!(["digits"]));
    let pixels = serde_json::json!({ "pixels": [0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0] });
    let out = muon(&server, &["invoke", "digits", "--data", &pixels.to_string()], None)?;
    assert!(stdout(&out).starts_with(r#"{"digit":0,"#), "{}", stdout(&out));

    let missing = muon(&server, &["models", "push", "broken", "/nonexistent.onnx"], None)?;
    assert!(!missing.status.success());
    let out = muon(&server, &["models", "delete", "digits"], None)?;
    assert_eq!(stdout(&out).trim(), "deleted model digits");
    let out = muon(&server, &["models", "delete", "digits"], None)?;
    assert!(!out.status.success(), "deleting twice fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{out:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn datasets_are_pushed_shown_listed_and_deleted_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let wine = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/datasets/wine.csv");
    let wine = wine.display().to_string();
    let push = ["datasets", "push", "wine", &wine, "--label", "target", "--categorical", "target", "--stratify"];
    let out = muon(&server, &push, None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("dataset wine version 1 ("), "{text}");
    assert!(text.contains("rows: 178 read, 178 kept"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("alcohol") && l.contains("13.000618")), "the mean of alcohol: {text}");

    let out = muon(&server, &["datasets", "show", "wine", "--json"], None)?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((report["name"].as_str(), report["version"].as_u64()), (Some("wine"), Some(1)));
    let out = muon(&server, &["datasets"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with("wine") && l.contains("178")), "{}", stdout(&out));

    let unknown = muon(&server, &["datasets", "push", "x", "/tmp/data.xlsx"], None)?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains(".csv, .jsonl or .parquet"), "{unknown:?}");
    let out = muon(&server, &["datasets", "delete", "wine"], None)?;
    assert_eq!(stdout(&out).trim(), "deleted dataset wine (every version)");
    Ok(())
}

/// Deploys train-linear (and the trapping step as `trap`) and pushes the
/// synthetic regression dataset as `linear`, all through the CLI; answers a
/// directory for spec files.
fn jobs_setup(server: &Server) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("linear.csv");
    std::fs::write(&csv, crate::jobs::linear_csv(400))?;
    let guest = target_dir().join("wasm32-wasip2/guest");
    for (name, file) in [("train-linear", "train_linear.wasm"), ("trap", "fixture_train_trap.wasm")] {
        let out = muon(server, &["deploy", name, &guest.join(file).display().to_string()], None)?;
        anyhow::ensure!(out.status.success(), "deploy {name}: {out:?}");
    }
    let csv = csv.display().to_string();
    let out = muon(server, &["datasets", "push", "linear", &csv, "--label", "y", "--seed", "3"], None)?;
    anyhow::ensure!(out.status.success(), "datasets push: {out:?}");
    Ok(dir)
}

/// Writes `spec` to `dir/name` and answers its path.
fn spec_file(dir: &tempfile::TempDir, name: &str, spec: &serde_json::Value) -> anyhow::Result<String> {
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(spec)?)?;
    Ok(path.display().to_string())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_follow_show_report_logs_and_delete_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&["--jobs-workers", "2"]).await?;
    let dir = jobs_setup(&server)?;
    let spec = serde_json::json!({
        "function": "train-linear", "dataset": "linear", "epochs": 20, "batch_size": 16, "seed": 7,
        "config": {"features": 3}, "hyper": {"learning_rate": {"choice": [0.1, 0.001]}},
        "search": {"method": "grid", "trials": 2, "parallel": 2},
    });
    let file = spec_file(&dir, "linear.json", &spec)?;

    let out = muon(&server, &["jobs", "run", &file, "--follow"], None)?;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("job ") && lines[0].ends_with(" succeeded"), "{text}");
    let id = lines[0].split(' ').nth(1).unwrap_or_default().to_owned();
    // A row per trial, each with every epoch; the fast learning rate is the best.
    let rows: Vec<&str> = lines.iter().copied().filter(|l| l.contains(" succeeded ")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows.iter().all(|r| r.split_whitespace().any(|w| w == "20")), "20 epochs each: {text}");
    let best: Vec<&str> = rows.iter().copied().filter(|r| r.starts_with('*')).collect();
    assert_eq!(best.len(), 1, "{text}");
    assert!(best[0].contains("learning_rate=0.1"), "{text}");
    assert!(text.contains("best trial: 0 (learning_rate=0.1)"), "{text}");
    let test_line = lines.iter().find(|l| l.starts_with("test (40 rows): loss ")).unwrap_or(&"");
    let loss: f64 = test_line.split_whitespace().nth(4).unwrap_or("nan").trim_end_matches(',').parse()?;
    assert!(loss < 1e-2, "{text}");

    // The same job through the other commands.
    let out = muon(&server, &["jobs"], None)?;
    assert!(stdout(&out).lines().any(|l| l.starts_with(&id) && l.contains("succeeded")), "{}", stdout(&out));
    let out = muon(&server, &["jobs", "--json"], None)?;
    let list: muon::api::JobList = serde_json::from_slice(&out.stdout)?;
    assert_eq!(list.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let out = muon(&server, &["jobs", "show", &id], None)?;
    let shown = stdout(&out);
    assert!(shown.starts_with(&format!("job {id} succeeded: train-linear version 1 on linear version 1")), "{shown}");
    let out = muon(&server, &["jobs", "show", &id, "--json"], None)?;
    let job: muon::api::Job = serde_json::from_slice(&out.stdout)?;
    assert_eq!((job.best_trial, job.trials.len()), (Some(0), 2));
    let svg = dir.path().join("report.svg");
    let out = muon(&server, &["jobs", "report", &id, "--svg", &svg.display().to_string()], None)?;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("best trial: 0"), "{}", stdout(&out));
    let drawing = std::fs::read_to_string(&svg)?;
    assert!(drawing.starts_with("<svg") && drawing.contains("<polyline"), "{drawing}");
    let out = muon(&server, &["jobs", "logs", &id], None)?;
    assert!(out.status.success(), "{out:?}");
    // With --json, --follow prints the report as the API's type, and nothing else.
    let out = muon(&server, &["jobs", "run", &file, "--follow", "--json"], None)?;
    assert!(out.status.success(), "{out:?}");
    let report: muon::api::JobReport = serde_json::from_slice(&out.stdout)?;
    assert_eq!((report.state, report.best_trial, report.trials.len()), (muon::api::JobState::Succeeded, Some(0), 2));

    let out = muon(&server, &["jobs", "delete", &id], None)?;
    assert_eq!(stdout(&out).trim(), format!("deleted job {id}"));
    let out = muon(&server, &["jobs", "show", &id], None)?;
    assert!(!out.status.success() && stderr(&out).contains("404 not_found"), "{out:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_that_fail_or_are_cancelled_exit_non_zero_from_the_cli() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let dir = jobs_setup(&server)?;

    // A step that traps: the follower exits non-zero with the job's error.
    let trap = serde_json::json!({"function": "trap", "dataset": "linear", "epochs": 3, "hyper": {"trap_after": 4}});
    let out = muon(&server, &["jobs", "run", &spec_file(&dir, "trap.json", &trap)?, "--follow"], None)?;
    assert!(!out.status.success(), "{out:?}");
    let error = stderr(&out);
    assert!(error.contains("failed: no trial succeeded") && error.contains("trapped on purpose"), "{error}");
    assert!(stdout(&out).lines().any(|l| l.contains(" failed ")), "the report still prints: {}", stdout(&out));

    // A long job, followed in the background and cancelled from another command.
    let long = serde_json::json!({
        "function": "train-linear", "dataset": "linear", "epochs": 100_000, "config": {"features": 3},
        "hyper": {"learning_rate": 0.1},
    });
    let long = spec_file(&dir, "long.json", &long)?;
    let follower = muon_command(&server)
        .args(["jobs", "run", &long, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    let id = loop {
        let out = muon(&server, &["jobs", "--json"], None)?;
        let list: muon::api::JobList = serde_json::from_slice(&out.stdout)?;
        if let Some(job) = list.jobs.first().filter(|j| j.function == "train-linear") {
            let out = muon(&server, &["jobs", "show", &job.id, "--json"], None)?;
            let shown: muon::api::Job = serde_json::from_slice(&out.stdout)?;
            if shown.trials.first().is_some_and(|t| t.epoch >= 1) {
                break job.id.clone();
            }
        }
        anyhow::ensure!(started.elapsed().as_secs() < 60, "the long job did not start an epoch");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let out = muon(&server, &["jobs", "cancel", &id], None)?;
    assert!(stdout(&out).starts_with(&format!("job {id} cancelled")), "{out:?}");
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output()).await??;
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains(&format!("job {id} cancelled: cancelled by its owner")), "{out:?}");
    let out = muon(&server, &["jobs", "cancel", &id], None)?;
    assert!(!out.status.success() && stderr(&out).contains("409 conflict"), "{out:?}");

    // Errors that say what to do.
    let out = muon(&server, &["jobs", "run", "/no/such/spec.json"], None)?;
    assert!(stderr(&out).contains("cannot read the job spec /no/such/spec.json"), "{out:?}");
    let typo = dir.path().join("typo.json");
    std::fs::write(&typo, r#"{"function": "train-linear", "dataset": "linear", "epoch": 3}"#)?;
    let out = muon(&server, &["jobs", "run", &typo.display().to_string()], None)?;
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("is not a job spec") && stderr(&out).contains("unknown field `epoch`"), "{out:?}");
    let unknown = serde_json::json!({"function": "nope", "dataset": "linear", "epochs": 1});
    let out = muon(&server, &["jobs", "run", &spec_file(&dir, "nope.json", &unknown)?], None)?;
    assert!(stderr(&out).contains("HTTP 400 bad_request: `function`"), "{out:?}");
    Ok(())
}

/// A dropped event stream is resumed with `Last-Event-ID`: a proxy cuts the
/// first stream in the middle of its fourth event, and `--follow` reconnects
/// after the third, then ends with the report.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_follow_resumes_a_dropped_event_stream() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let dir = jobs_setup(&server)?;
    let spec = serde_json::json!({
        "function": "train-linear", "dataset": "linear", "epochs": 10, "batch_size": 16,
        "config": {"features": 3}, "hyper": {"learning_rate": 0.1},
    });
    let file = spec_file(&dir, "linear.json", &spec)?;
    let (proxy, resumed_from) = cutting_proxy(server.address().to_owned()).await?;
    let out = tokio::task::spawn_blocking(move || {
        muon_command(&server).env("MUON_SERVER", proxy).args(["jobs", "run", &file, "--follow"]).output()
    })
    .await??;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).lines().any(|l| l.starts_with('*') && l.contains(" succeeded ")), "{out:?}");
    let resumed_from = resumed_from.lock().map(|seen| seen.clone()).unwrap_or_default();
    assert_eq!(resumed_from, ["", "3"], "the Last-Event-ID of each request of the stream");
    Ok(())
}

/// A TCP proxy to `upstream` that cuts the first event stream it carries ten
/// bytes after its third event; answers its URL and the `Last-Event-ID` of
/// every event request it carried ("" for none).
async fn cutting_proxy(upstream: String) -> anyhow::Result<(String, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cut_one = Arc::new(AtomicBool::new(false));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, seen, cut_one) = (upstream.clone(), Arc::clone(&record), Arc::clone(&cut_one));
            tokio::spawn(async move { relay(client, &upstream, &seen, &cut_one).await });
        }
    });
    Ok((url, seen))
}

async fn relay(
    client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
    cut_one: &AtomicBool,
) -> anyhow::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = TcpStream::connect(upstream).await?.into_split();
    let armed = AtomicBool::new(false);
    let requests = async {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return anyhow::Ok(());
            }
            let text = String::from_utf8_lossy(&buffer[..read]).to_lowercase();
            if text.contains("/events http/1.1") {
                let last = text.split("last-event-id: ").nth(1).and_then(|rest| rest.lines().next());
                seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(last.unwrap_or_default().to_owned());
                if !cut_one.swap(true, Ordering::SeqCst) {
                    armed.store(true, Ordering::SeqCst);
                }
            }
            server_write.write_all(&buffer[..read]).await?;
        }
    };
    let answers = async {
        let mut buffer = vec![0; 16 * 1024];
        let mut events = 0;
        loop {
            let read = server_read.read(&mut buffer).await?;
            if read == 0 {
                return anyhow::Ok(());
            }
            let (mut end, mut cut) = (read, false);
            if armed.load(Ordering::SeqCst) {
                for at in (0..read.saturating_sub(1)).filter(|at| &buffer[*at..*at + 2] == b"\n\n") {
                    events += 1;
                    if events == 3 {
                        (end, cut) = ((at + 12).min(read), true);
                        break;
                    }
                }
            }
            client_write.write_all(&buffer[..end]).await?;
            if cut {
                // Dropping both halves closes the client's connection mid-body.
                return Ok(());
            }
        }
    };
    tokio::select! {
        done = requests => done,
        done = answers => done,
    }
}
