//! Restarts: every function answers again without recompiling.

use muon_tests::Server;

#[tokio::test(flavor = "multi_thread")]
async fn functions_survive_a_restart_without_recompiling() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.deploy_ok("web", "http-hello", "").await?;
    server.deploy_ok("web", "http-hello", "timeout_ms=1000").await?;
    let redeploy_hits = server.metric("muon_compile_cache_total{result=\"hit\"}").await?;
    assert_eq!(redeploy_hits, Some(1.0), "redeploying the same bytes uses the cache");
    let (data_dir, temp) = (server.data_dir.clone(), server.temp());
    assert_eq!(server.stop().await?, Some(0));

    let restarted = Server::start_in(&data_dir, &[], temp).await?;
    assert_eq!(restarted.get_fn("hello", "").await?.text().await?, "hello, world!\n");
    assert!(restarted.get_fn("web", "/x").await?.text().await?.contains("/x"));
    let shown: serde_json::Value = restarted.http.get(restarted.url("/v1/functions/web")).send().await?.json().await?;
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["limits"]["timeout_ms"], 1000);
    assert_eq!(restarted.metric("muon_compile_cache_total{result=\"miss\"}").await?, None, "nothing recompiled");
    // hello, web v2, and web v1: the stable version of v2's watched rollout.
    assert_eq!(restarted.metric("muon_compile_cache_total{result=\"hit\"}").await?, Some(3.0));
    Ok(())
}
