//! The OpenAPI document names real routes, and the server's answers are the
//! API's types (issue 10, item 5).

use muon::api::{
    Deleted, ErrorBody, FunctionDetail, FunctionKind, FunctionList, FunctionVersion, Health, HealthStatus, IssuedKey,
    JobList, ModelList, Readiness, ReadyStatus, Revoked, TenantCreated, TenantList, TenantQuotas, UsageGroups,
    UsageRecords,
};
use muon_tests::{Server, client_with_key, muon_bin, target_dir};

/// A request for every path and method of `/v1/openapi.json`, with a key: no
/// answer may be `405` or a `404` for the route itself.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_a_route_of_the_server() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let response = client_with_key(None)?.get(server.url("/v1/openapi.json")).send().await?;
    assert_eq!(response.status(), 200, "the document needs no key");
    let document: serde_json::Value = response.json().await?;
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi {version}");

    let mut requests = Vec::new();
    for (pattern, item) in document["paths"].as_object().into_iter().flatten() {
        let path = pattern
            .replace("{tenant}", "default")
            .replace("{name}", "hello")
            .replace("{id}", "no-such-key")
            .replace("{rest}", "a/b");
        for method in item.as_object().into_iter().flatten().map(|(method, _)| method.to_uppercase()) {
            requests.push((method, path.clone()));
        }
    }
    // Deletes last, so every other request still finds the function.
    requests.sort_by_key(|(method, _)| method == "DELETE");
    assert!(requests.len() >= 40, "{} operations documented", requests.len());
    for jobs in ["/v1/jobs", "/v1/jobs/{id}/events", "/v1/jobs/{id}/report.svg"] {
        assert!(document["paths"][jobs].is_object(), "{jobs} is not documented");
    }
    for (method, path) in requests {
        let response = server.http.request(method.parse()?, server.url(&path)).send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        assert_ne!(status, 405, "{method} {path} is documented but answers 405");
        if status == 404 {
            let error: ErrorBody = serde_json::from_slice(&body)?;
            assert!(!error.error.message.starts_with("route"), "{method} {path}: {}", error.error.message);
        }
    }
    Ok(())
}

/// Answers read back into the API's types, field for field.
#[tokio::test(flavor = "multi_thread")]
async fn answers_are_the_api_types() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "memory_mb=64").await?;
    server.deploy_ok("hello", "hello", "").await?;
    server.get_fn("hello", "/").await?.error_for_status()?;

    let get = |path: &str| server.http.get(server.url(path)).send();
    let health: Health = get("/healthz").await?.json().await?;
    assert_eq!(health.status, HealthStatus::Ok);
    let ready: Readiness = get("/readyz").await?.json().await?;
    assert_eq!(ready.status, ReadyStatus::Ok);
    let list: FunctionList = get("/v1/functions").await?.json().await?;
    assert_eq!(list.functions.len(), 1);
    let detail: FunctionDetail = get("/v1/functions/hello").await?.json().await?;
    assert_eq!((detail.active.version, detail.versions.len()), (2, 2));
    assert_eq!(detail.versions[0].limits.memory_mb, 64);
    let models: ModelList = get("/v1/models").await?.json().await?;
    assert!(models.models.is_empty());
    let jobs: JobList = get("/v1/jobs").await?.json().await?;
    assert!(jobs.jobs.is_empty());
    let tenants: TenantList = get("/v1/tenants").await?.json().await?;
    assert!(tenants.tenants.iter().any(|t| t.name == "default"));
    let quotas: TenantQuotas = get("/v1/tenants/default/quotas").await?.json().await?;
    assert_eq!(quotas.tenant, "default");
    let usage: UsageGroups = get("/v1/usage").await?.json().await?;
    assert_eq!(usage.groups.iter().map(|g| g.requests).sum::<i64>(), 1);
    let records: UsageRecords = get("/v1/usage/records").await?.json().await?;
    assert_eq!(records.next_after.as_deref(), records.records.last().map(|r| r.request_id.as_str()));

    let missing = get("/v1/functions/nope").await?;
    let error: ErrorBody = missing.json().await?;
    assert_eq!(error.error.code, muon::api::ErrorCode::NotFound);
    Ok(())
}

/// Routes outside `/v1` answer `405` with `Allow` for other methods too.
#[tokio::test(flavor = "multi_thread")]
async fn operator_routes_are_405_for_other_methods() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        let response = client_with_key(None)?.post(server.url(path)).send().await?;
        let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert_eq!((response.status().as_u16(), allow.as_str()), (405, "GET"), "POST {path}");
    }
    Ok(())
}

/// `muon ... --json` prints the API's types, read back here with them.
#[tokio::test(flavor = "multi_thread")]
async fn cli_json_prints_the_api_types() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let muon = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let out = std::process::Command::new(muon_bin())
            .args(args)
            .arg("--json")
            .env("MUON_SERVER", &server.base)
            .env("MUON_DATA_DIR", &server.data_dir)
            .env_remove("MUON_API_KEY")
            .output()?;
        anyhow::ensure!(out.status.success(), "muon {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(out.stdout)
    };
    let hello = target_dir().join("wasm32-wasip2/guest/hello.wasm").display().to_string();
    let deployed: FunctionVersion = serde_json::from_slice(&muon(&["deploy", "greet", &hello, "--memory-mb", "64"])?)?;
    assert_eq!(
        (deployed.name.as_str(), deployed.kind, deployed.limits.memory_mb),
        ("greet", FunctionKind::Handler, 64)
    );
    let listed: FunctionList = serde_json::from_slice(&muon(&["functions"])?)?;
    assert_eq!(listed.functions, vec![deployed.clone()]);
    let models: ModelList = serde_json::from_slice(&muon(&["models"])?)?;
    assert!(models.models.is_empty());
    let jobs: JobList = serde_json::from_slice(&muon(&["jobs"])?)?;
    assert!(jobs.jobs.is_empty());
    let created: TenantCreated = serde_json::from_slice(&muon(&["tenants", "create", "acme"])?)?;
    assert_eq!((created.tenant.as_str(), created.key.tenant.as_str()), ("acme", "acme"));
    let tenants: TenantList = serde_json::from_slice(&muon(&["tenants"])?)?;
    assert!(tenants.tenants.iter().any(|t| t.name == "acme"));
    let key: IssuedKey = serde_json::from_slice(&muon(&["keys", "create", "--tenant", "acme"])?)?;
    let revoked: Revoked = serde_json::from_slice(&muon(&["keys", "revoke", &key.id])?)?;
    assert_eq!(revoked.revoked, key.id);
    let usage: UsageGroups = serde_json::from_slice(&muon(&["usage"])?)?;
    assert_eq!(usage.tenant, "default");
    let deleted: Deleted = serde_json::from_slice(&muon(&["delete", "greet"])?)?;
    assert_eq!(deleted.deleted, "greet");
    Ok(())
}
