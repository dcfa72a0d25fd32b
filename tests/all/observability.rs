//! Health, readiness, metrics and request ids.

use muon_tests::Server;

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("boom", "fixture-panic", "").await?;
    assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    assert_eq!(server.get_fn("boom", "").await?.status(), 500);
    let health = server.http.get(server.url("/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-muon-request-id"));
    assert_eq!(server.http.get(server.url("/readyz")).send().await?.status(), 200);

    let metrics = server.http.get(server.url("/metrics")).send().await?;
    assert!(metrics.headers()["content-type"].to_str()?.starts_with("text/plain"));
    let text = metrics.text().await?;
    for expected in [
        "muon_requests_total{function=\"default/hello\",outcome=\"ok\"} 1",
        "muon_requests_total{function=\"default/boom\",outcome=\"trap\"} 1",
        "muon_request_duration_seconds_bucket{function=\"default/hello\",le=",
        "muon_instantiate_seconds{quantile=\"0.5\"}",
        "muon_instantiate_seconds{quantile=\"0.99\"}",
        "muon_instances_in_flight{function=\"default/hello\"} 0",
        "muon_compile_cache_total{result=\"miss\"} 2",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_unique_and_in_the_logs() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("boom", "fixture-panic", "").await?;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let response = server.get_fn("boom", "").await?;
        ids.insert(response.headers()["x-muon-request-id"].to_str()?.to_owned());
    }
    assert_eq!(ids.len(), 20);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = server.logs();
    for id in &ids {
        assert!(logs.contains(id.as_str()), "request id {id} is not in the logs");
    }
    Ok(())
}
