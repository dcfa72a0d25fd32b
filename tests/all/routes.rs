//! Unknown routes are `404`; only a path that exists for another method is
//! `405`, with the methods it accepts (issue 9, item 11).

use muon_tests::{Server, error_of};

#[tokio::test(flavor = "multi_thread")]
async fn only_paths_that_exist_for_another_method_are_405() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let unknown = [
        ("GET", "/v1/functions/hello/nope"),
        ("POST", "/v1/functions/hello/rollback/again"),
        ("GET", "/v1/models/m/extra"),
        ("GET", "/v1/tenants/acme"),
        ("GET", "/v1/tenants/acme/keys/k"),
        ("GET", "/v1/keys"),
        ("DELETE", "/v1/keys/k/x"),
        ("GET", "/v1/usage/totals"),
        ("GET", "/v1/usage/records/1"),
    ];
    for (method, path) in unknown {
        let request = server.http.request(method.parse()?, server.url(path));
        let (status, code, _) = error_of(request.send().await?).await?;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{method} {path}");
    }
    let wrong_method = [
        ("POST", "/v1/functions", "GET"),
        ("POST", "/v1/functions/hello", "GET, PUT, DELETE"),
        ("GET", "/v1/functions/hello/rollback", "POST"),
        ("GET", "/v1/functions/hello/invoke", "POST"),
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/v1/models/m", "GET, PUT, DELETE"),
        ("DELETE", "/v1/tenants", "GET, POST"),
        ("GET", "/v1/tenants/acme/keys", "POST"),
        ("POST", "/v1/tenants/acme/quotas", "GET, PUT"),
        ("GET", "/v1/keys/k", "DELETE"),
        ("POST", "/v1/usage", "GET"),
        ("DELETE", "/v1/usage/records", "GET"),
    ];
    for (method, path, allowed) in wrong_method {
        let response = server.http.request(method.parse()?, server.url(path)).send().await?;
        let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (status, code, _) = error_of(response).await?;
        assert_eq!((status, code.as_str(), allow.as_str()), (405, "method_not_allowed", allowed), "{method} {path}");
    }
    Ok(())
}
