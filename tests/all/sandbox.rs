//! Runaway and hostile guests: each is stopped with the right error, and the
//! host answers the next request normally.

use std::time::{Duration, Instant};

use muon_tests::{Server, error_of};

/// Slack for process scheduling and HTTP on a busy 2-core CI machine.
const OVERHEAD: Duration = Duration::from_millis(300);

async fn hello_still_works(server: &Server) -> anyhow::Result<()> {
    let response = server.get_fn("hello", "").await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "hello, world!\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_loop_is_stopped_at_its_deadline() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("spin", "fixture-loop", "timeout_ms=500").await?;
    for _ in 0..2 {
        let started = Instant::now();
        let response = server.get_fn("spin", "").await?;
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
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("nap", "fixture-sleep", "timeout_ms=500").await?;
    let started = Instant::now();
    let (status, code, _) = error_of(server.get_fn("nap", "").await?).await?;
    let elapsed = started.elapsed();
    assert_eq!((status, code.as_str()), (504, "timeout"));
    assert!(elapsed < Duration::from_millis(550) + OVERHEAD, "stopped late: {elapsed:?}");
    hello_still_works(&server).await?;
    let quick = server.get_fn("nap", "?ms=10").await?;
    assert_eq!(quick.text().await?, "woke up", "a short sleep finishes normally");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn spinning_guests_do_not_starve_other_requests() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("spin", "fixture-loop", "timeout_ms=3000").await?;
    // More spinners than worker threads: they yield every epoch tick.
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn({
                let request = server.http.get(server.url("/fn/default/spin"));
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
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("hog", "fixture-memory-hog", "memory_mb=64").await?;
    for _ in 0..3 {
        let (status, code, message) = error_of(server.get_fn("hog", "").await?).await?;
        assert_eq!((status, code.as_str()), (500, "memory_limit"));
        assert!(message.contains("64 MiB"), "{message}");
    }
    hello_still_works(&server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_stack_overflow_trap() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("deep", "fixture-recursion", "").await?;
    let (status, code, message) = error_of(server.get_fn("deep", "").await?).await?;
    assert_eq!((status, code.as_str()), (500, "trap"));
    assert!(message.contains("stack overflow"), "{message}");
    hello_still_works(&server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_a_trap_with_the_panic_message() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("boom", "fixture-panic", "").await?;
    let (status, code, message) = error_of(server.get_fn("boom", "").await?).await?;
    assert_eq!((status, code.as_str()), (500, "trap"));
    assert!(message.contains("the fixture panicked on purpose"), "{message}");
    assert!(!message.contains("RUST_BACKTRACE"), "{message}");
    let calm = server.get_fn("boom", "?calm").await?;
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

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_fresh_instance() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("canary", "fixture-canary", "").await?;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let http = server.http.clone();
        let url = server.url("/fn/default/canary");
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
