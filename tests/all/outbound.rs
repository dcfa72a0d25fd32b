//! Outbound HTTP: denied by default, allowed per deploy, internal addresses
//! refused unless the operator allows them.

use muon_tests::Server;

fn fetch_path(server: &Server) -> String {
    format!("/fetch?url=http://{}/healthz", server.address())
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_are_denied_unless_the_host_is_allowed() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("closed", "http-hello", "").await?;
    let body = server.get_fn("closed", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    // Named, but loopback is never reachable by default.
    server.deploy_ok("loopback", "http-hello", "allowed_hosts=127.0.0.1").await?;
    let body = server.get_fn("loopback", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("DestinationIpProhibited"), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_may_allow_private_addresses_for_named_hosts() -> anyhow::Result<()> {
    let server = Server::start(&["--allow-private-outbound", "true"]).await?;
    server.deploy_ok("open", "http-hello", "allowed_hosts=127.0.0.1").await?;
    let body = server.get_fn("open", &fetch_path(&server)).await?.text().await?;
    assert_eq!(body.trim(), "fetched 200");
    server.deploy_ok("other", "http-hello", "allowed_hosts=example.com").await?;
    let body = server.get_fn("other", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("HttpRequestDenied"), "an unlisted host stays denied: {body}");
    Ok(())
}
