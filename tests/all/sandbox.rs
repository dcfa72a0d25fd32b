//! Runaway and hostile guests: each is stopped with the right error, and the
//! host answers the next request normally.
//!
//! Each case runs twice: against its own WASI 0.2 fixture, and against
//! `fixture-spin-p3`, a WASI 0.3 component (Spin SDK 7's `#[http_service]`)
//! that plays every hostile guest at a path of its own.

use std::time::{Duration, Instant};

use muon_tests::{MIB, Server, error_of, record_of};

/// Slack for process scheduling and HTTP on a busy 2-core CI machine.
const OVERHEAD: Duration = Duration::from_millis(300);

async fn hello_still_works(server: &Server) -> anyhow::Result<()> {
    let response = server.get_fn("hello", "").await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "hello, world!\n");
    Ok(())
}

/// The WASI 0.3 fixture that plays every hostile guest below.
const P3: &str = "fixture-spin-p3";

#[tokio::test(flavor = "multi_thread")]
async fn runaway_loop_is_stopped_at_its_deadline() -> anyhow::Result<()> {
    runaway_loop("fixture-loop", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_loop_is_stopped_at_its_deadline_wasi_p3() -> anyhow::Result<()> {
    runaway_loop(P3, "/loop").await
}

async fn runaway_loop(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("spin", component, "timeout_ms=500").await?;
    for _ in 0..2 {
        let started = Instant::now();
        let response = server.get_fn("spin", path).await?;
        let elapsed = started.elapsed();
        let (status, code, _) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (504, "timeout"));
        assert!(elapsed >= Duration::from_millis(500), "stopped early: {elapsed:?}");
        assert!(elapsed < Duration::from_millis(550) + OVERHEAD, "stopped late: {elapsed:?}");
        hello_still_works(&server).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_blocked_in_a_host_call_is_stopped_at_its_deadline() -> anyhow::Result<()> {
    blocked_in_a_host_call("fixture-sleep", "").await
}

/// The WASI 0.3 guest waits in an async host call (`wait-for`), which
/// suspends its task rather than its fiber.
#[tokio::test(flavor = "multi_thread")]
async fn guest_blocked_in_a_host_call_is_stopped_at_its_deadline_wasi_p3() -> anyhow::Result<()> {
    blocked_in_a_host_call(P3, "/sleep").await
}

async fn blocked_in_a_host_call(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("nap", component, "timeout_ms=500").await?;
    let started = Instant::now();
    let (status, code, _) = error_of(server.get_fn("nap", path).await?).await?;
    let elapsed = started.elapsed();
    assert_eq!((status, code.as_str()), (504, "timeout"));
    assert!(elapsed < Duration::from_millis(550) + OVERHEAD, "stopped late: {elapsed:?}");
    hello_still_works(&server).await?;
    let quick = server.get_fn("nap", &format!("{path}?ms=10")).await?;
    assert_eq!(quick.text().await?, "woke up", "a short sleep finishes normally");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn spinning_guests_do_not_starve_other_requests() -> anyhow::Result<()> {
    spinners_beside_hello("fixture-loop", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn spinning_guests_do_not_starve_other_requests_wasi_p3() -> anyhow::Result<()> {
    spinners_beside_hello(P3, "/loop").await
}

async fn spinners_beside_hello(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("spin", component, "timeout_ms=3000").await?;
    // More spinners than worker threads: they yield every epoch tick.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn({
                let request = server.http.get(server.url(&format!("/fn/default/spin{path}")));
                async move { request.send().await.map(|r| r.status().as_u16()) }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    hello_still_works(&server).await?;
    let health = server.http.get(server.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(1000), "hello took {:?} beside spinners", started.elapsed());
    for spinner in spinners {
        assert_eq!(spinner.await??, 504);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_hits_memory_limit() -> anyhow::Result<()> {
    memory_hog("fixture-memory-hog", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_hits_memory_limit_wasi_p3() -> anyhow::Result<()> {
    memory_hog(P3, "/hog").await
}

async fn memory_hog(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("hog", component, "memory_mb=64").await?;
    for _ in 0..3 {
        let (status, code, message) = error_of(server.get_fn("hog", path).await?).await?;
        assert_eq!((status, code.as_str()), (500, "memory_limit"));
        assert!(message.contains("64 MiB"), "{message}");
    }
    hello_still_works(&server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_stack_overflow_trap() -> anyhow::Result<()> {
    deep_recursion("fixture-recursion", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_stack_overflow_trap_wasi_p3() -> anyhow::Result<()> {
    deep_recursion(P3, "/deep").await
}

async fn deep_recursion(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("deep", component, "").await?;
    let (status, code, message) = error_of(server.get_fn("deep", path).await?).await?;
    assert_eq!((status, code.as_str()), (500, "trap"));
    assert!(message.contains("stack overflow"), "{message}");
    hello_still_works(&server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_a_trap_with_the_panic_message() -> anyhow::Result<()> {
    panic_trap("fixture-panic", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_a_trap_with_the_panic_message_wasi_p3() -> anyhow::Result<()> {
    panic_trap(P3, "/boom").await
}

async fn panic_trap(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("boom", component, "").await?;
    let (status, code, message) = error_of(server.get_fn("boom", path).await?).await?;
    assert_eq!((status, code.as_str()), (500, "trap"));
    assert!(message.contains("the fixture panicked on purpose"), "{message}");
    assert!(!message.contains("RUST_BACKTRACE"), "{message}");
    let calm = server.get_fn("boom", &format!("{path}?calm")).await?;
    assert_eq!(calm.text().await?, "calm", "the next request gets a fresh instance");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_output_is_capped_and_stdout_is_bounded() -> anyhow::Result<()> {
    let server = Server::start(&["--guest-output-bytes", "4096"]).await?;
    server.deploy_ok("huge", "fixture-huge-output", "memory_mb=256").await?;
    let response = server.get_fn("huge", "?mb=32").await?;
    let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
    let (status, code, _) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (500, "response_too_large"));
    let small = server.get_fn("huge", "?mb=1").await?;
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().await?.len(), 1 << 20);
    // The guest printed 1 MiB to stdout; the log holds at most 4 KiB of it,
    // tagged with the request id.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = server.logs();
    let line = logs.lines().find(|l| l.contains(&request_id) && l.contains("guest output")).unwrap_or_default();
    assert!(!line.is_empty(), "no guest output logged for {request_id}");
    assert!(line.len() < 6000, "guest output not bounded: {} bytes", line.len());
    Ok(())
}

/// A WASI 0.3 guest's body streams after its head, so past the cap it is
/// cut off (no clean end) rather than answered with an error; the call is
/// settled as `response_too_large` with no more than the cap sent.
#[tokio::test(flavor = "multi_thread")]
async fn huge_output_is_capped_and_stdout_is_bounded_wasi_p3() -> anyhow::Result<()> {
    let server =
        Server::start(&["--guest-output-bytes", "4096", "--max-response-bytes", &(16 * MIB).to_string()]).await?;
    server.deploy_ok("huge", P3, "memory_mb=256").await?;
    let response = server.get_fn("huge", "/huge?mb=32").await?;
    let request_id = response.headers()["x-muon-request-id"].to_str()?.to_owned();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err(), "a capped body must not end cleanly");
    let record = record_of(&server, &request_id).await?;
    assert_eq!(record["outcome"], "response_too_large", "{record}");
    assert!(record["bytes_out"].as_u64().unwrap_or(u64::MAX) <= 16 * MIB, "{record}");
    let small = server.get_fn("huge", "/huge?mb=1").await?;
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().await?.len(), 1 << 20);
    let logs = server.logs();
    let line = logs.lines().find(|l| l.contains(&request_id) && l.contains("guest output")).unwrap_or_default();
    assert!(!line.is_empty(), "no guest output logged for {request_id}");
    assert!(line.len() < 6000, "guest output not bounded: {} bytes", line.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance() -> anyhow::Result<()> {
    fresh_instances("fixture-canary", "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance_wasi_p3() -> anyhow::Result<()> {
    fresh_instances(P3, "/canary").await
}

async fn fresh_instances(component: &str, path: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("canary", component, "").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let http = server.http.clone();
        let url = server.url(&format!("/fn/default/canary{path}"));
        tasks.spawn(async move {
            for i in 0..125 {
                let body = http.get(&url).send().await?.text().await?;
                anyhow::ensure!(body == "fresh", "worker {worker} request {i}: {body}");
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn host_resources_per_instance_are_capped() -> anyhow::Result<()> {
    let server = Server::start(&["--max-guest-resources", "1000"]).await?;
    server.deploy_ok("web", "http-hello", "").await?;
    let fine = server.get_fn("web", "/hoard?n=500").await?;
    assert_eq!(fine.text().await?.trim(), "holding 500 fields");
    let (status, code, message) = error_of(server.get_fn("web", "/hoard?n=1000000").await?).await?;
    assert_eq!((status, code.as_str()), (500, "trap"));
    assert!(message.contains("resource table"), "{message}");
    assert_eq!(server.get_fn("web", "/hoard?n=10").await?.status(), 200);
    Ok(())
}
