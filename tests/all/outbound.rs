//! Outbound HTTP: denied by default, allowed per deploy, internal addresses
//! refused unless the operator allows them; for WASI 0.2 guests
//! (`http-hello`) and WASI 0.3 ones (`fixture-spin-p3`) alike.

use muon_tests::Server;

fn fetch_path(server: &Server) -> String {
    format!("/fetch?url=http://{}/healthz", server.address())
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_are_denied_unless_the_host_is_allowed() -> anyhow::Result<()> {
    denied_unless_allowed("http-hello").await
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_are_denied_unless_the_host_is_allowed_wasi_p3() -> anyhow::Result<()> {
    denied_unless_allowed("fixture-spin-p3").await
}

async fn denied_unless_allowed(component: &str) -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("closed", component, "").await?;
    let body = server.get_fn("closed", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    // Named, but loopback is never reachable by default.
    server.deploy_ok("loopback", component, "allowed_hosts=127.0.0.1").await?;
    let body = server.get_fn("loopback", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("DestinationIpProhibited"), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_may_allow_private_addresses_for_named_hosts() -> anyhow::Result<()> {
    private_addresses_allowed("http-hello").await
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_may_allow_private_addresses_for_named_hosts_wasi_p3() -> anyhow::Result<()> {
    private_addresses_allowed("fixture-spin-p3").await
}

async fn private_addresses_allowed(component: &str) -> anyhow::Result<()> {
    let server = Server::start(&["--allow-private-outbound", "true"]).await?;
    server.deploy_ok("open", component, "allowed_hosts=127.0.0.1").await?;
    let body = server.get_fn("open", &fetch_path(&server)).await?.text().await?;
    assert_eq!(body.trim(), "fetched 200");
    server.deploy_ok("other", component, "allowed_hosts=example.com").await?;
    let body = server.get_fn("other", &fetch_path(&server)).await?.text().await?;
    assert!(body.contains("HttpRequestDenied"), "an unlisted host stays denied: {body}");
    Ok(())
}
