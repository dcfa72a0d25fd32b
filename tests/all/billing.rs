//! Metering, pricing, quotas and the ledger, on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use muon_tests::{Backend, Server, client_with_key, error_of};
use serde_json::{Value, json};

crate::on_both_databases!(
    every_request_gets_one_record_failures_included,
    costs_follow_the_plan_and_totals_add_up,
    rate_limits_and_quotas_answer_429_and_are_recorded_free,
    deploy_quotas_are_enforced,
    monthly_budget_stops_spending,
    shutdown_flushes_the_ledger,
    crash_loses_no_billed_response_syncing_on_an_interval,
    crash_loses_no_billed_response_always_syncing,
    a_crash_before_any_move_is_replayed_from_the_journal,
    a_torn_last_record_is_skipped_and_the_rest_replayed,
    the_interval_sync_runs_while_records_are_written,
);

const PLAN: &str =
    "[plans.default]\nper_request = 100\nper_cpu_ms = 1000\nper_gb_second = 1000000\nper_mb_out = 5000\n";

/// A config file in the server's temp dir.
fn config_file(contents: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    Ok(file)
}

async fn start_with_plan(
    backend: Backend,
    plan: &str,
    flags: &[&str],
) -> anyhow::Result<(Server, tempfile::NamedTempFile)> {
    let config = config_file(plan)?;
    let path = config.path().display().to_string();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(flags);
    Ok((Server::start_on(backend, &all).await?, config))
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-muon-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn every_request_gets_one_record_failures_included(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("boom", "fixture-panic", "").await?;
    server.deploy_ok("spin", "fixture-loop", "timeout_ms=300").await?;
    server.deploy_ok("hog", "fixture-memory-hog", "memory_mb=32").await?;
    server.deploy_ok("normalize", "json-transform", "").await?;
    let mut expected = HashMap::new();
    for (path, outcome) in [
        ("/fn/default/hello?name=x", "ok"),
        ("/fn/default/boom", "trap"),
        ("/fn/default/spin", "timeout"),
        ("/fn/default/hog", "memory_limit"),
    ] {
        let response = server.http.get(server.url(path)).send().await?;
        expected.insert(request_id(&response), (outcome, response.bytes().await?.len()));
    }
    let body = r#"{"values":[1,2,3]}"#;
    let response = server.http.post(server.url("/fn/default/normalize")).body(body).send().await?;
    expected.insert(request_id(&response), ("ok", response.bytes().await?.len()));

    let records = server.usage_records(&server.http, None).await?;
    assert_eq!(records.len(), expected.len(), "{records:#?}");
    for record in &records {
        let (outcome, _) = expected[record["request_id"].as_str().unwrap()];
        assert_eq!(record["outcome"], outcome, "{record}");
        assert_eq!(record["tenant"], "default");
        assert!(record["wall_us"].as_i64() > Some(0));
        assert!(record["version"].as_i64() == Some(1));
        assert!(record["start_ms"].as_i64() > Some(1_700_000_000_000));
        assert!(record["peak_memory_bytes"].as_i64() >= Some(65536), "{record}");
        assert!(record["memory_byte_ms"].as_i64() > Some(0), "{record}");
        assert_eq!(record["nn_cpu_us"], 0);
    }
    let by_function: HashMap<&str, &Value> = records.iter().map(|r| (r["function"].as_str().unwrap(), r)).collect();
    assert!(
        by_function["spin"]["cpu_us"].as_i64() >= Some(200_000),
        "a spinning guest burns CPU: {}",
        by_function["spin"]
    );
    assert!(by_function["spin"]["wall_us"].as_i64() >= Some(300_000));
    assert!(by_function["hog"]["peak_memory_bytes"].as_i64() > Some(16 << 20), "{}", by_function["hog"]);
    assert_eq!(by_function["normalize"]["bytes_in"], body.len());
    let normalize_id = by_function["normalize"]["request_id"].as_str().unwrap();
    assert_eq!(by_function["normalize"]["bytes_out"], expected[normalize_id].1);
    assert_eq!(by_function["hello"]["bytes_out"], "hello, x!\n".len());
    Ok(())
}

/// The cost of a record under `PLAN`, computed independently.
fn plan_cost(record: &Value) -> i64 {
    let field = |name: &str| i128::from(record[name].as_i64().unwrap_or(0));
    let total = 100
        + field("cpu_us") * 1000 / 1000
        + field("memory_byte_ms") * 1_000_000 / 1_000_000_000_000
        + field("bytes_out") * 5000 / 1_000_000;
    i64::try_from(total).unwrap_or(i64::MAX)
}

async fn costs_follow_the_plan_and_totals_add_up(backend: Backend) -> anyhow::Result<()> {
    let (server, _config) = start_with_plan(backend, PLAN, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("big", "fixture-huge-output", "memory_mb=64").await?;
    for _ in 0..5 {
        assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    }
    assert_eq!(server.get_fn("big", "?mb=2").await?.status(), 200);
    let records = server.usage_records(&server.http, None).await?;
    assert_eq!(records.len(), 6);
    let mut sum = 0;
    for record in &records {
        assert_eq!(record["cost_micros"].as_i64(), Some(plan_cost(record)), "{record}");
        sum += record["cost_micros"].as_i64().unwrap_or(0);
    }
    let big = records.iter().find(|r| r["function"] == "big").unwrap();
    assert!(big["cost_micros"].as_i64() >= Some(100 + 2 * 5000), "2 MiB out costs at least 10000: {big}");

    let totals: Value = server.http.get(server.url("/v1/usage?group_by=function")).send().await?.json().await?;
    let groups = totals["groups"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 2);
    let total_cost: i64 = groups.iter().filter_map(|g| g["cost_micros"].as_i64()).sum();
    assert_eq!(total_cost, sum, "totals are reproducible from the records");
    let hello = groups.iter().find(|g| g["group"] == "hello").unwrap();
    assert_eq!(hello["requests"], 5);
    assert_eq!(hello["bytes_out"], 5 * 14);
    for by in ["day", "hour"] {
        let grouped: Value =
            server.http.get(server.url(&format!("/v1/usage?group_by={by}"))).send().await?.json().await?;
        let cost: i64 =
            grouped["groups"].as_array().into_iter().flatten().filter_map(|g| g["cost_micros"].as_i64()).sum();
        assert_eq!(cost, sum, "group_by={by}");
    }
    let only_hello: Value =
        server.http.get(server.url("/v1/usage?function=hello&from=2020-01-01")).send().await?.json().await?;
    assert_eq!(only_hello["groups"].as_array().map(Vec::len), Some(1));
    let future: Value = server.http.get(server.url("/v1/usage?from=2999-01-01")).send().await?.json().await?;
    assert_eq!(future["groups"].as_array().map(Vec::len), Some(0));
    let (status, _, _) = error_of(server.http.get(server.url("/v1/usage?group_by=week")).send().await?).await?;
    assert_eq!(status, 400);

    let metrics = server.http.get(server.url("/metrics")).send().await?.text().await?;
    assert!(metrics.contains("muon_tenant_requests_total{tenant=\"default\"} 6"), "{metrics}");
    assert!(metrics.contains(&format!("muon_tenant_cost_micros_total{{tenant=\"default\"}} {sum}")), "{metrics}");
    Ok(())
}

async fn rate_limits_and_quotas_answer_429_and_are_recorded_free(backend: Backend) -> anyhow::Result<()> {
    let (server, _config) = start_with_plan(backend, PLAN, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("slow", "fixture-sleep", "").await?;
    let set = server
        .http
        .put(server.url("/v1/tenants/default/quotas"))
        .json(&json!({ "requests_per_second": 5 }))
        .send()
        .await?;
    assert_eq!(set.status(), 200);
    let mut limited = 0;
    for _ in 0..20 {
        let response = server.get_fn("hello", "").await?;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let (_, code, _) = error_of(response).await?;
            assert_eq!(code, "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 were rate limited");

    server
        .http
        .put(server.url("/v1/tenants/default/quotas"))
        .json(&json!({ "max_concurrent_requests": 1 }))
        .send()
        .await?;
    let first = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/slow?ms=600"));
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, code, _) = error_of(server.get_fn("slow", "?ms=1").await?).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
    assert_eq!(first.await??, 200);

    let records = server.usage_records(&server.http, None).await?;
    let rejected: Vec<&Value> =
        records.iter().filter(|r| r["outcome"] == "rate_limited" || r["outcome"] == "quota_exceeded").collect();
    assert_eq!(rejected.len(), limited + 1, "every rejection is recorded");
    assert!(rejected.iter().all(|r| r["cost_micros"] == 0), "rejections are free");
    assert!(records.iter().filter(|r| r["outcome"] == "ok").all(|r| r["cost_micros"].as_i64() >= Some(100)));
    Ok(())
}

async fn deploy_quotas_are_enforced(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let quotas =
        json!({ "max_functions": 1, "max_memory_mb": 64, "max_timeout_ms": 1000, "max_storage_bytes": 150000 });
    server.http.put(server.url("/v1/tenants/default/quotas")).json(&quotas).send().await?;
    server.deploy_ok("one", "hello", "memory_mb=64&timeout_ms=1000").await?;
    for (name, query, what) in [
        ("two", "memory_mb=64&timeout_ms=1000", "functions"),
        ("one", "memory_mb=128&timeout_ms=1000", "memory_mb"),
        ("one", "memory_mb=64&timeout_ms=2000", "timeout_ms"),
    ] {
        let (status, code, message) = error_of(server.deploy(name, "hello", query).await?).await?;
        assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{what}");
        assert!(message.contains(what), "{message}");
    }
    // The same bytes again are stored once, and counted once.
    server.deploy_ok("one", "hello", "memory_mb=32&timeout_ms=500").await?;
    server.deploy_ok("one", "fixture-sleep", "memory_mb=32&timeout_ms=500").await?;
    let (status, _, message) =
        error_of(server.deploy("one", "fixture-panic", "memory_mb=32&timeout_ms=500").await?).await?;
    assert_eq!(status, 429, "a third component passes the storage quota");
    assert!(message.contains("bytes"), "{message}");
    let shown: Value = server.http.get(server.url("/v1/tenants/default/quotas")).send().await?.json().await?;
    assert_eq!(shown["quotas"]["max_functions"], 1);
    Ok(())
}

async fn monthly_budget_stops_spending(backend: Backend) -> anyhow::Result<()> {
    let plan = "[plans.default]\nper_request = 100\n[quotas]\nmonthly_budget_micros = 250\n";
    let (server, _config) = start_with_plan(backend, plan, &[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    for _ in 0..3 {
        assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    }
    let (status, code, message) = error_of(server.get_fn("hello", "").await?).await?;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
    assert!(message.contains("budget"), "{message}");
    Ok(())
}

async fn shutdown_flushes_the_ledger(backend: Backend) -> anyhow::Result<()> {
    let flags = backend.flags()?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&flags).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = server.http.get(server.url("/fn/default/hello"));
        tasks.spawn(async move { anyhow::Ok(request.send().await?.status().as_u16()) });
    }
    let mut ok = 0;
    while let Some(status) = tasks.join_next().await {
        ok += usize::from(status?? == 200);
    }
    let (data_dir, temp) = (server.data_dir.clone(), server.temp());
    assert_eq!(server.stop().await?, Some(0));
    let restarted = Server::start_in(&data_dir, &flags, temp).await?;
    assert_eq!(restarted.usage_records(&restarted.http, None).await?.len(), ok);
    Ok(())
}

async fn crash_loses_no_billed_response_syncing_on_an_interval(backend: Backend) -> anyhow::Result<()> {
    crash_loses_no_billed_response(backend, "interval").await
}

async fn crash_loses_no_billed_response_always_syncing(backend: Backend) -> anyhow::Result<()> {
    crash_loses_no_billed_response(backend, "always").await
}

/// `kill -9` while 8 clients call: every answered request has exactly one record.
async fn crash_loses_no_billed_response(backend: Backend, ledger_sync: &str) -> anyhow::Result<()> {
    let mut flags = backend.flags()?;
    flags.extend(["--ledger-sync".to_owned(), ledger_sync.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Server::start(&flags).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, url, stop) = (server.http.clone(), server.url("/fn/default/hello"), std::sync::Arc::clone(&stop));
        clients.spawn(async move {
            let mut received = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(response) if response.status() == 200 => received.push(request_id(&response)),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            received
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.signal("KILL")?;
    server.wait(Duration::from_secs(10)).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut received = Vec::new();
    while let Some(ids) = clients.join_next().await {
        received.extend(ids?);
    }
    assert!(received.len() > 50, "only {} responses before the crash", received.len());

    let restarted = Server::start_in(&server.data_dir, &flags, server.temp()).await?;
    let counts = counted(&restarted.usage_records(&restarted.http, None).await?);
    let missing: Vec<&String> = received.iter().filter(|id| !counts.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} responses have no record: {:?}",
        missing.len(),
        received.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}

/// Counts each request id among `records`; fails if one is there twice.
fn counted(records: &[Value]) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in records {
        *counts.entry(record["request_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "a request id was recorded twice");
    counts
}

/// Complete records in the journal's files (the live one and any segments):
/// each file is a header ending in a zero byte, then records, each ending in one.
fn journaled_records(data_dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut records = 0;
    for entry in std::fs::read_dir(data_dir.join("ledger"))? {
        let path = entry?.path();
        if path.file_name().is_some_and(|name| name != "lock") {
            records += std::fs::read(&path)?.iter().filter(|&&b| b == 0).count().saturating_sub(1);
        }
    }
    Ok(records)
}

/// Starts a server that moves nothing out of its journal during a test
/// (`--ledger-sync-interval-ms 60000`), answers `n` calls of `hello`, and
/// kills it (`kill -9`). Returns the answered request ids and the flags.
async fn journal_then_kill(backend: Backend, n: usize) -> anyhow::Result<(Server, Vec<String>, Vec<String>)> {
    let mut flags = backend.flags()?;
    flags.extend(["--ledger-sync-interval-ms".to_owned(), "60000".to_owned()]);
    let borrowed: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = Server::start(&borrowed).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = server.http.get(server.url("/fn/default/hello"));
        calls.spawn(async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status() == 200, "answered {}", response.status());
            anyhow::Ok(request_id(&response))
        });
    }
    let mut received = Vec::new();
    while let Some(id) = calls.join_next().await {
        received.push(id??);
    }
    assert_eq!(journaled_records(&server.data_dir)?, n, "every answered record is in the journal");
    server.signal("KILL")?;
    server.wait(Duration::from_secs(10)).await?;
    Ok((server, received, flags))
}

/// Nothing moved into the database before `kill -9`: the next start moves
/// every answered request's record out of the journal, once.
async fn a_crash_before_any_move_is_replayed_from_the_journal(backend: Backend) -> anyhow::Result<()> {
    let (server, received, flags) = journal_then_kill(backend, 200).await?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let restarted = Server::start_in(&server.data_dir, &flags, server.temp()).await?;
    let counts = counted(&restarted.usage_records(&restarted.http, None).await?);
    assert_eq!(counts.len(), received.len());
    assert!(received.iter().all(|id| counts.contains_key(id)), "an answered request has no record");
    assert_eq!(journaled_records(&server.data_dir)?, 0, "the moved journal is gone");
    Ok(())
}

/// A start with metering off keeps no ledger, but still moves what a
/// metered run left in the journal.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_with_metering_off_still_moves_the_journal() -> anyhow::Result<()> {
    let (server, received, _) = journal_then_kill(Backend::Sqlite, 5).await?;
    let restarted = Server::start_in(&server.data_dir, &["--metering", "false"], server.temp()).await?;
    let counts = counted(&restarted.usage_records(&restarted.http, None).await?);
    assert_eq!(counts.len(), received.len());
    assert_eq!(journaled_records(&server.data_dir)?, 0, "the moved journal is gone");
    Ok(())
}

/// A power loss during an append leaves a record cut short at the end of the
/// journal: the next start skips it, says so, and moves every other record.
async fn a_torn_last_record_is_skipped_and_the_rest_replayed(backend: Backend) -> anyhow::Result<()> {
    let (server, received, flags) = journal_then_kill(backend, 5).await?;
    let mut journal = std::fs::OpenOptions::new().append(true).open(server.data_dir.join("ledger/journal"))?;
    // Part of a record: no zero byte ends it.
    std::io::Write::write_all(&mut journal, b"\x21torn\x07defa")?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let restarted = Server::start_in(&server.data_dir, &flags, server.temp()).await?;
    let counts = counted(&restarted.usage_records(&restarted.http, None).await?);
    assert_eq!(counts.len(), received.len(), "{counts:?}");
    assert!(received.iter().all(|id| counts.contains_key(id)), "an answered request has no record");
    let logs = restarted.logs();
    assert!(logs.contains("cut short") && logs.contains("defa"), "no warning about the torn record: {logs}");
    Ok(())
}

/// A broken sync loop would leave records unsynced until a power loss finds them.
async fn the_interval_sync_runs_while_records_are_written(backend: Backend) -> anyhow::Result<()> {
    let syncs = "muon_ledger_syncs_total";
    let server = Server::start_on(backend, &["--ledger-sync-interval-ms", "20"]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    assert_eq!(server.metric(syncs).await?, None, "nothing written, nothing synced");
    for _ in 0..3 {
        assert_eq!(server.get_fn("hello", "").await?.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = server.metric(syncs).await?.unwrap_or(0.0);
    assert!(synced >= 3.0, "3 records, each written more than an interval apart, got {synced} syncs");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.metric(syncs).await?, Some(synced), "an idle ledger has nothing to sync");

    let always = Server::start_on(backend, &["--ledger-sync", "always"]).await?;
    always.deploy_ok("hello", "hello", "").await?;
    assert_eq!(always.get_fn("hello", "").await?.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(always.metric(syncs).await?, None, "always: every commit syncs, no syncer runs");
    assert_eq!(always.usage_records(&always.http, None).await?.len(), 1);
    Ok(())
}

#[test]
fn an_unknown_ledger_sync_is_refused_naming_the_valid_values() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = config_file("ledger_sync = \"bogus\"\n")?;
    let serve = |flags: &[&str]| {
        std::process::Command::new(muon_tests::muon_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(flags)
            .env_remove("MUON_DATABASE_URL")
            .output()
    };
    let path = config.path().display().to_string();
    for flags in [["--config", path.as_str()], ["--ledger-sync", "bogus"]] {
        let out = serve(&flags)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started: {stderr}");
        assert!(
            stderr.contains("bogus") && stderr.contains("interval") && stderr.contains("always"),
            "{flags:?}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metering_can_be_turned_off() -> anyhow::Result<()> {
    let server = Server::start(&["--metering", "false"]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    assert!(server.usage_records(&server.http, None).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_fails_closed_with_503() -> anyhow::Result<()> {
    // A PostgreSQL server of this test's own, so it can be stopped.
    let dir = tempfile::tempdir()?;
    let output = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh"))
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(output.status.success(), "postgres.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    let url = String::from_utf8(output.stdout)?.trim().to_owned();
    let pg_ctl = |action: &str| {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/pg_ctl"))
            .max()?;
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin).arg("-D").arg(dir.path().join("data")).args([
            "-w",
            "-m",
            "immediate",
            action,
        ]);
        if action != "stop" {
            command.arg("-l").arg(dir.path().join("log2"));
        }
        command.status().ok()
    };
    let result = async {
        let server = Server::start(&["--database-url", &url]).await?;
        server.deploy_ok("hello", "hello", "public=true").await?;
        // Without a key: checking one would need the database, which is down.
        let anonymous = client_with_key(None)?;
        let call = || anonymous.get(server.url("/fn/default/hello")).send();
        let mut answered = Vec::new();
        let response = call().await?;
        assert_eq!(response.status(), 200);
        answered.push(request_id(&response));
        anyhow::ensure!(pg_ctl("stop").is_some_and(|s| s.success()), "cannot stop postgres");
        // Records wait in the journal for a while; then the node refuses work.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let refused = loop {
            let response = call().await?;
            if response.status() == 200 {
                answered.push(request_id(&response));
            } else {
                break error_of(response).await?;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "still serving 20 s after the database went down");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!((refused.0, refused.1.as_str()), (503, "ledger_unavailable"), "no usage is dropped silently");
        let ready = server.http.get(server.url("/readyz")).send().await?;
        assert_eq!(ready.status(), 503, "not ready without its database");
        let ready: serde_json::Value = ready.json().await?;
        assert_eq!((&ready["status"], &ready["checks"]["database"]["ok"]), (&json!("unavailable"), &json!(false)));
        assert_eq!(ready["error"]["code"], "unavailable", "{ready}");

        // `restart` starts it with the options it ran with (its port).
        anyhow::ensure!(pg_ctl("restart").is_some_and(|s| s.success()), "cannot start postgres again");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let response = call().await?;
            if response.status() == 200 {
                answered.push(request_id(&response));
                break;
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "not serving 20 s after the database came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counts = counted(&server.usage_records(&server.http, None).await?);
        let missing: Vec<&String> = answered.iter().filter(|id| !counts.contains_key(*id)).collect();
        assert!(missing.is_empty(), "{} of {} answered requests have no record", missing.len(), answered.len());
        assert_eq!(counts.len(), answered.len(), "a refused request is not billed");
        assert!(answered.len() > 2, "some requests were served from the journal during the outage");
        anyhow::Ok(())
    }
    .await;
    pg_ctl("stop");
    result
}
