//! Operations over HTTP: guarded rollouts that roll back a bad canary and a
//! slow watched deploy on their own, no false alarm from a steady trickle of
//! failures, one decision for two nodes, the statistics and thresholds
//! routes, and tenancy.
//!
//! The servers run with 1-second windows instead of 10-second ones, so a
//! test that stands for five minutes of windows takes thirty seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use muon_tests::{Backend, Server, error_of};
use serde_json::{Value, json};

crate::on_both_databases!(
    a_bad_canary_is_rolled_back_within_seconds,
    a_slow_watched_deploy_is_rolled_back_from_its_p99
);

/// A webhook receiver on loopback: keeps each request's signature header and body.
struct Receiver {
    url: String,
    received: Arc<std::sync::Mutex<Vec<(String, bytes::Bytes)>>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let kept = Arc::clone(&kept);
                    async move {
                        use http_body_util::BodyExt;
                        let signature = request
                            .headers()
                            .get(muon::monitor::SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        kept.lock().map_err(|_| std::io::Error::other("poisoned"))?.push((signature, body));
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()),
                        ))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
            }
        });
        Ok(Self { url, received })
    }

    /// The payloads received so far, each checked against its signature.
    fn payloads(&self, secret: &str) -> anyhow::Result<Vec<Value>> {
        let received = self.received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
        received
            .iter()
            .map(|(signature, body)| {
                let expected = muon::monitor::signature(secret, body)?;
                anyhow::ensure!(*signature == expected, "signature {signature} is not {expected}");
                Ok(serde_json::from_slice(body)?)
            })
            .collect()
    }

    /// Waits until a payload with `status` arrives.
    async fn wait_for(&self, secret: &str, status: &str, limit: Duration) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            if let Some(found) = self.payloads(secret)?.into_iter().find(|p| p["status"] == status) {
                return Ok(found);
            }
            anyhow::ensure!(started.elapsed() < limit, "no {status} payload within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 1-second windows; a rollout is judged after 50 calls of each version.
const FAST: &[&str] = &["--monitor-window-ms", "1000", "--monitor-min-sample", "50"];

/// Calls `/fn/default/{name}{query}` from `workers` loops until stopped;
/// counts answers by status.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>>,
}

impl Load {
    fn start(server: &Server, name: &str, query: &str, workers: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url(&format!("/fn/default/{name}{query}"));
        let tasks = (0..workers)
            .map(|_| {
                let (stop, url, http) = (Arc::clone(&stop), url.clone(), server.http.clone());
                tokio::spawn(async move {
                    let mut statuses = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        let status = http.get(&url).send().await.map_or(0, |r| r.status().as_u16());
                        *statuses.entry(status).or_default() += 1;
                        tokio::time::sleep(pause).await;
                    }
                    statuses
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> anyhow::Result<BTreeMap<u16, u64>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for task in self.tasks {
            for (status, count) in task.await? {
                *all.entry(status).or_default() += count;
            }
        }
        Ok(all)
    }
}

/// `GET /v1/functions/{name}` with `client`.
async fn function(server: &Server, client: &reqwest::Client, name: &str) -> anyhow::Result<Value> {
    let response = client.get(server.url(&format!("/v1/functions/{name}"))).send().await?;
    anyhow::ensure!(response.status() == 200, "show {name}: {}", response.status());
    Ok(response.json().await?)
}

/// Waits until `done` holds for the function's detail, or `limit` passes.
async fn wait_for(
    server: &Server,
    name: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<(Value, Duration)> {
    let started = Instant::now();
    loop {
        let detail = function(server, &server.http, name).await?;
        if done(&detail) {
            return Ok((detail, started.elapsed()));
        }
        anyhow::ensure!(started.elapsed() < limit, "not within {limit:?}: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The calls a version had, by outcome, from the stats route.
async fn outcomes(server: &Server, name: &str, version: i64) -> anyhow::Result<BTreeMap<String, u64>> {
    let stats: Value =
        server.http.get(server.url(&format!("/v1/functions/{name}/stats?window=1h"))).send().await?.json().await?;
    let found = stats["versions"].as_array().into_iter().flatten().find(|v| v["version"] == version);
    Ok(found.map(|v| serde_json::from_value(v["outcomes"].clone())).transpose()?.unwrap_or_default())
}

async fn a_bad_canary_is_rolled_back_within_seconds(backend: Backend) -> anyhow::Result<()> {
    let mut flags = FAST.to_vec();
    flags.extend(["--monitor-allow-private-sinks", "true"]);
    let server = Server::start_on(backend, &flags).await?;
    let receiver = Receiver::start().await?;
    let sink = json!({"url": receiver.url, "secret": "s3cret"});
    let response = server.http.put(server.url("/v1/alerts/sinks/pager")).json(&sink).send().await?;
    assert_eq!(response.status(), 201);
    server.deploy_ok("svc", "hello", "").await?;
    let load = Load::start(&server, "svc", "", 2, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deployed =
        server.deploy_ok("svc", "fixture-flaky", "rollout=canary&canary_percent=20&canary_for_s=600").await?;
    assert_eq!(deployed["version"], 2);
    let detail = function(&server, &server.http, "svc").await?;
    assert_eq!(detail["rollout"]["mode"], "canary", "{detail}");
    assert_eq!(detail["rollout"]["percent"], 20);

    // 20% of the load reaches 50 calls within a second or two; the rollback
    // must follow within 30 s of that.
    let (detail, took) = wait_for(&server, "svc", Duration::from_secs(40), |d| d["version"] == 1).await?;
    assert!(detail.get("rollout").is_none(), "the rollout ended: {detail}");
    let traps = outcomes(&server, "svc", 2).await?;
    assert!(traps.get("trap").copied().unwrap_or(0) > 0, "v2 trapped before it was rolled back: {traps:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = outcomes(&server, "svc", 2).await?.values().sum::<u64>();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = outcomes(&server, "svc", 2).await?.values().sum::<u64>();
    assert_eq!(before, after, "no call reaches v2 after the rollback");
    // The sink hears of it in Alertmanager's shape, signed, then of its end.
    let firing = receiver.wait_for("s3cret", "firing", Duration::from_secs(10)).await?;
    assert_eq!(firing["version"], "4");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "rollout_error_rate", "{firing}");
    assert_eq!((alert["labels"]["function"].as_str(), alert["labels"]["version"].as_str()), (Some("svc"), Some("2")));
    assert!(alert["annotations"]["summary"].as_str().is_some_and(|s| s.contains("rolled back")), "{firing}");
    let resolved = receiver.wait_for("s3cret", "resolved", Duration::from_secs(15)).await?;
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    let events: Value = server.http.get(server.url("/v1/events?kind=rollback")).send().await?.json().await?;
    assert_eq!(events["events"][0]["detail"]["automatic"], true, "{events}");
    let statuses = load.stop().await?;
    assert!(statuses.get(&200).copied().unwrap_or(0) > 100, "{statuses:?}");
    eprintln!("rolled back {took:?} after the deploy; calls {statuses:?}");
    Ok(())
}

async fn a_slow_watched_deploy_is_rolled_back_from_its_p99(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, FAST).await?;
    // v1 ignores `ms`; v2 sleeps 50 ms on every call.
    server.deploy_ok("svc", "hello", "").await?;
    let load = Load::start(&server, "svc", "?ms=50", 2, Duration::from_millis(2));
    // The watched deploy's baseline is v1's calls before it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.deploy_ok("svc", "fixture-sleep", "watch_s=600").await?;
    let detail = function(&server, &server.http, "svc").await?;
    assert_eq!((detail["version"].as_i64(), detail["rollout"]["mode"].as_str()), (Some(2), Some("watch")), "{detail}");
    let (detail, took) = wait_for(&server, "svc", Duration::from_secs(40), |d| d["version"] == 1).await?;
    assert!(detail.get("rollout").is_none(), "{detail}");
    load.stop().await?;
    let slow = outcomes(&server, "svc", 2).await?;
    assert!(slow.get("ok").copied().unwrap_or(0) >= 50, "v2 answered, slowly, before it went: {slow:?}");
    eprintln!("rolled back {took:?} after the deploy");
    Ok(())
}

/// Five minutes of 10-second windows, as thirty 1-second ones: a function
/// failing 1% of its calls at random, redeployed as the same component
/// under watch, is neither rolled back nor alerted on.
#[tokio::test(flavor = "multi_thread")]
async fn a_steady_trickle_of_failures_raises_no_alarm() -> anyhow::Result<()> {
    let server = Server::start(FAST).await?;
    server.deploy_ok("svc", "fixture-flaky", "").await?;
    // This test is about failures: a shared CI machine's latency jitter is
    // not the function's, so latency may move 50-fold before it counts.
    let calm = json!({"latency_ratio": 50.0});
    let set = server.http.put(server.url("/v1/functions/svc/thresholds")).json(&calm).send().await?;
    assert_eq!(set.status(), 200);
    let load = Load::start(&server, "svc", "?fail_percent=1", 2, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.deploy_ok("svc", "fixture-flaky", "watch_s=20").await?;
    tokio::time::sleep(Duration::from_secs(25)).await;
    let detail = function(&server, &server.http, "svc").await?;
    assert_eq!(detail["version"], 2, "not rolled back: {detail}");
    assert!(detail.get("rollout").is_none(), "promoted after watch_s: {detail}");
    let statuses = load.stop().await?;
    let failed = statuses.get(&500).copied().unwrap_or(0);
    let total: u64 = statuses.values().sum();
    assert!(failed > 0 && (failed as f64) < 0.03 * total as f64, "about 1% failed: {statuses:?}");
    let alerts: Value = server.http.get(server.url("/v1/alerts")).send().await?.json().await?;
    assert_eq!(alerts["alerts"], json!([]), "no alert: {alerts}");
    let promoted: Value = server.http.get(server.url("/v1/events?kind=promotion")).send().await?.json().await?;
    assert_eq!(promoted["events"][0]["subject"], "svc", "{promoted}");
    Ok(())
}

/// Firing alerts (and their ends) for `detector`.
async fn alerts_of(server: &Server, detector: &str) -> anyhow::Result<Vec<Value>> {
    let alerts: Value = server.http.get(server.url("/v1/alerts")).send().await?.json().await?;
    Ok(alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["detector"] == detector)
        .cloned()
        .collect())
}

async fn wait_for_alert(server: &Server, detector: &str, state: &str, limit: Duration) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        if let Some(found) = alerts_of(server, detector).await?.into_iter().find(|a| a["state"] == state) {
            return Ok(found);
        }
        anyhow::ensure!(started.elapsed() < limit, "no {state} {detector} alert within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A function that starts failing half its calls fires `error_rate` after
/// three windows, resolved when it recovers; calls that stop fire `rate_drop`.
#[tokio::test(flavor = "multi_thread")]
async fn detectors_fire_on_errors_and_a_stop_and_resolve() -> anyhow::Result<()> {
    let server = Server::start(FAST).await?;
    server.deploy_ok("svc", "fixture-flaky", "").await?;
    let healthy = Load::start(&server, "svc", "?fail_percent=0", 2, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(5)).await;
    healthy.stop().await?;
    let failing = Load::start(&server, "svc", "?fail_percent=50", 2, Duration::from_millis(5));
    let alert = wait_for_alert(&server, "error_rate", "firing", Duration::from_secs(15)).await?;
    assert_eq!((alert["labels"]["function"].as_str(), alert["labels"]["version"].as_i64()), (Some("svc"), Some(1)));
    assert!(alert["value"].as_f64().is_some_and(|v| v > 0.3), "{alert}");
    assert!(alert["summary"].as_str().is_some_and(|s| s.contains("fails")), "{alert}");
    failing.stop().await?;
    let healthy = Load::start(&server, "svc", "?fail_percent=0", 2, Duration::from_millis(5));
    wait_for_alert(&server, "error_rate", "resolved", Duration::from_secs(15)).await?;
    healthy.stop().await?;
    let stopped = wait_for_alert(&server, "rate_drop", "firing", Duration::from_secs(15)).await?;
    assert_eq!(stopped["value"], 0.0, "{stopped}");
    let firing: Value = server.http.get(server.url("/v1/alerts?state=firing")).send().await?.json().await?;
    assert!(firing["alerts"].as_array().is_some_and(|a| a.iter().all(|a| a["state"] == "firing")), "{firing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_the_rollback() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let mut flags = vec!["--database-url", &url];
    flags.extend_from_slice(FAST);
    let one = Server::start(&flags).await?;
    let two = Server::start(&flags).await?;
    let admin = two.with_key(&one.admin_key)?;
    one.deploy_ok("svc", "hello", "").await?;
    one.deploy_ok("svc", "fixture-flaky", "rollout=canary&canary_percent=20&canary_for_s=600").await?;
    // The other node routes the canary too, once it has synced.
    let started = Instant::now();
    loop {
        // Until it has synced, node two may not know the function at all.
        let response = admin.get(two.url("/v1/functions/svc")).send().await?;
        let detail: Value = if response.status() == 200 { response.json().await? } else { Value::Null };
        if detail["rollout"]["candidate_version"] == 2 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "node two never saw the rollout: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Load on node one only: it decides, and node two applies the decision.
    let load = Load::start(&one, "svc", "", 2, Duration::from_millis(2));
    wait_for(&one, "svc", Duration::from_secs(40), |d| d["version"] == 1).await?;
    load.stop().await?;
    let started = Instant::now();
    loop {
        let detail = function(&two, &admin, "svc").await?;
        if detail["version"] == 1 && detail.get("rollout").is_none() {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "node two kept v2: {detail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..50 {
        let response = admin.get(two.url("/fn/default/svc")).send().await?;
        assert_eq!(response.status(), 200, "node two serves v1 only");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn statistics_and_thresholds_by_version_and_tenant() -> anyhow::Result<()> {
    let server = Server::start(&["--monitor-window-ms", "1000"]).await?;
    server.deploy_ok("svc", "hello", "").await?;
    for _ in 0..30 {
        assert_eq!(server.http.get(server.url("/fn/default/svc")).send().await?.status(), 200);
    }
    server.deploy_ok("svc", "fixture-flaky", "rollout=direct").await?;
    for _ in 0..10 {
        server.http.get(server.url("/fn/default/svc?fail_percent=100")).send().await?;
    }
    let stats: Value = server.http.get(server.url("/v1/functions/svc/stats?window=5m")).send().await?.json().await?;
    assert_eq!(stats["window_s"], 300);
    let versions = stats["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(versions.iter().map(|v| v["version"].clone()).collect::<Vec<_>>(), [json!(2), json!(1)], "{stats}");
    assert_eq!(versions[1]["requests"], 30);
    assert_eq!(versions[1]["outcomes"], json!({"ok": 30}));
    assert_eq!(versions[0]["outcomes"], json!({"ok": 0, "trap": 10}));
    assert!(versions[1]["latency_ms"]["p50"].as_f64().is_some_and(|p| p > 0.0), "{stats}");
    let windows = versions[1]["windows"].as_array().map_or(0, Vec::len);
    assert!(windows >= 1, "{stats}");
    let ok_windows: u64 =
        versions[1]["windows"].as_array().into_iter().flatten().filter_map(|w| w["requests"].as_u64()).sum();
    assert_eq!(ok_windows, 30, "the windows add up to the total");

    let (status, code, message) =
        error_of(server.http.get(server.url("/v1/functions/svc/stats?window=2y")).send().await?).await?;
    assert_eq!((status, code.as_str()), (400, "bad_request"), "{message}");
    let (status, _, message) =
        error_of(server.http.get(server.url("/v1/functions/svc/stats?span=1m")).send().await?).await?;
    assert!(status == 400 && message.contains("span"), "{message}");

    // Thresholds: the function's own over the tenant's over the defaults.
    let put = |path: &str, body: Value| server.http.put(server.url(path)).json(&body).send();
    let tenant = put("/v1/monitor/thresholds", json!({"min_requests": 5})).await?;
    assert_eq!(tenant.status(), 200);
    let function: Value = put("/v1/functions/svc/thresholds", json!({"latency_ratio": 3.0})).await?.json().await?;
    assert_eq!(function["set"], json!({"latency_ratio": 3.0}));
    assert_eq!(function["effective"]["min_requests"], 5);
    assert_eq!(function["effective"]["latency_ratio"], 3.0);
    assert_eq!(function["effective"]["for_windows"], 3, "the default");
    let (status, _, message) =
        error_of(put("/v1/functions/svc/thresholds", json!({"latency_ratio": -1})).await?).await?;
    assert!(status == 400 && message.contains("latency_ratio"), "{message}");
    let (status, _, message) = error_of(put("/v1/monitor/thresholds", json!({"latency": 2})).await?).await?;
    assert!(status == 400 && message.contains("latency"), "{message}");

    // Another tenant sees none of it.
    let key = server.create_tenant("other").await?;
    let other = server.with_key(&key)?;
    for path in ["/v1/functions/svc/stats", "/v1/functions/svc/thresholds", "/v1/models/nothing/stats"] {
        let (status, code, _) = error_of(other.get(server.url(path)).send().await?).await?;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
    }
    let theirs: Value = other.get(server.url("/v1/monitor/thresholds")).send().await?.json().await?;
    assert_eq!(theirs["set"], json!({}), "the other tenant's own level is untouched: {theirs}");
    Ok(())
}
