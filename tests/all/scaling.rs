//! Concurrency limits, bounded queues and atomic version swaps.

use std::time::{Duration, Instant};

use muon_tests::Server;

#[tokio::test(flavor = "multi_thread")]
async fn over_the_concurrency_limit_requests_wait_then_get_503() -> anyhow::Result<()> {
    let server = Server::start(&["--queue-depth", "16", "--queue-timeout-ms", "300"]).await?;
    server.deploy_ok("slow", "fixture-sleep", "max_concurrency=4&timeout_ms=5000").await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let request = server.http.get(server.url("/fn/default/slow?ms=50"));
        tasks.spawn(async move {
            let response = request.send().await?;
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().map(str::to_owned));
            anyhow::Ok((response.status().as_u16(), retry_after.transpose()?))
        });
    }
    let (mut ok, mut overloaded) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result?? {
            (200, _) => ok += 1,
            (503, Some(retry)) => {
                assert!(retry.parse::<u32>().is_ok_and(|s| s >= 1), "Retry-After {retry}");
                overloaded += 1;
            }
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok + overloaded, 200);
    assert!(ok >= 4 && overloaded > 0, "ok {ok}, overloaded {overloaded}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let in_flight = server.metric("muon_instances_in_flight{function=\"default/slow\"}").await?;
    assert_eq!(in_flight, Some(0.0));
    let waits = server.metric("muon_queue_wait_seconds_count").await?;
    assert!(waits.is_some_and(|n| n > 0.0), "queue waits recorded: {waits:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redeploy_swaps_atomically_and_in_flight_requests_finish_on_their_version() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("swap", "fixture-sleep", "").await?;
    let in_flight = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/swap?ms=1500"));
        async move { anyhow::Ok(request.send().await?.text().await?) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.deploy_ok("swap", "hello", "").await?;
    assert_eq!(server.get_fn("swap", "").await?.text().await?, "hello, world!\n");
    assert_eq!(in_flight.await??, "woke up");
    Ok(())
}
