//! Tenants, keys and isolation, on SQLite and PostgreSQL.

use muon_tests::{Backend, Server, client_with_key, error_of};
use serde_json::{Value, json};

crate::on_both_databases!(
    keys_are_required_and_bad_keys_all_look_the_same,
    tenants_are_created_by_admins_only,
    functions_live_in_their_tenants_namespace,
    an_admin_key_acts_as_the_tenant_it_names,
    other_tenants_things_are_404_on_every_route,
    public_functions_need_no_key,
    revoked_keys_stop_working_at_once,
);

async fn keys_are_required_and_bad_keys_all_look_the_same(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let key_file = server.data_dir.join("admin.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file)?.permissions().mode() & 0o777, 0o600);
    assert!(server.admin_key.starts_with("muon_sk_") && server.admin_key.len() > 60);

    let acme = server.create_tenant("acme").await?;
    let revoked = {
        let out: Value = server.http.post(server.url("/v1/tenants/acme/keys")).send().await?.json().await?;
        server.http.delete(server.url(&format!("/v1/keys/{}", out["id"].as_str().unwrap()))).send().await?;
        out["key"].as_str().unwrap().to_owned()
    };
    let mut bodies = Vec::new();
    for key in [None, Some("garbage"), Some("muon_sk_0000"), Some(revoked.as_str()), Some(&acme[..acme.len() - 1])] {
        let response = client_with_key(key)?.get(server.url("/v1/functions")).send().await?;
        assert_eq!(response.headers().get("www-authenticate").map(|v| v.as_bytes()), Some(&b"Bearer"[..]));
        let (status, code, message) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (401, "unauthorized"), "{key:?}");
        bodies.push(message);
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every bad key gets the same answer: {bodies:?}");
    assert_eq!(client_with_key(Some(&acme))?.get(server.url("/v1/functions")).send().await?.status(), 200);
    Ok(())
}

async fn tenants_are_created_by_admins_only(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let acme = client_with_key(Some(&server.create_tenant("acme").await?))?;
    let (status, code, _) =
        error_of(server.http.post(server.url("/v1/tenants")).json(&json!({ "name": "acme" })).send().await?).await?;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let (status, code, _) =
        error_of(server.http.post(server.url("/v1/tenants")).json(&json!({ "name": "Bad Name" })).send().await?)
            .await?;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let (status, code, _) =
        error_of(acme.post(server.url("/v1/tenants")).json(&json!({ "name": "evil" })).send().await?).await?;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let (status, _, _) = error_of(acme.get(server.url("/v1/tenants")).send().await?).await?;
    assert_eq!(status, 403);
    let list: Value = server.http.get(server.url("/v1/tenants")).send().await?.json().await?;
    let names: Vec<&str> =
        list["tenants"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["acme", "default"]);
    Ok(())
}

async fn functions_live_in_their_tenants_namespace(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let acme = client_with_key(Some(&server.create_tenant("acme").await?))?;
    server.deploy_ok("greet", "hello", "").await?;
    let bytes = muon_tests::component("json-transform")?;
    let deployed: Value = acme.put(server.url("/v1/functions/greet")).body(bytes).send().await?.json().await?;
    assert_eq!(deployed["tenant"], "acme");
    assert_eq!(deployed["version"], 1, "acme's greet is its own function");
    assert_eq!(server.http.get(server.url("/fn/default/greet")).send().await?.text().await?, "hello, world!\n");
    let acme_answer = acme.post(server.url("/fn/acme/greet")).body(r#"{"values":[1]}"#).send().await?.text().await?;
    assert!(acme_answer.contains("\"count\":1"), "{acme_answer}");
    let listed: Value = acme.get(server.url("/v1/functions")).send().await?.json().await?;
    assert_eq!(listed["functions"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["functions"][0]["kind"], "handler");
    Ok(())
}

/// `x-muon-tenant`: an admin key acts as the tenant it names (the
/// dashboard's tenant picker); a tenant's key may not, and an unknown tenant
/// is not acted as.
async fn an_admin_key_acts_as_the_tenant_it_names(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let acme_key = server.create_tenant("acme").await?;
    let acme = client_with_key(Some(&acme_key))?;
    let deployed: Value = server
        .http
        .put(server.url("/v1/functions/greet"))
        .header("x-muon-tenant", "acme")
        .body(muon_tests::component("hello")?)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(deployed["tenant"], "acme", "{deployed}");
    let own: Value = acme.get(server.url("/v1/functions")).send().await?.json().await?;
    assert_eq!(own["functions"][0]["name"], "greet", "acme sees what the admin deployed for it: {own}");
    let admins: Value = server.http.get(server.url("/v1/functions")).send().await?.json().await?;
    assert_eq!(admins["functions"].as_array().map(Vec::len), Some(0), "default has no functions: {admins}");
    let usage: Value =
        server.http.get(server.url("/v1/usage")).header("x-muon-tenant", "acme").send().await?.json().await?;
    assert_eq!(usage["tenant"], "acme");

    let forbidden = acme.get(server.url("/v1/functions")).header("x-muon-tenant", "default").send().await?;
    let (status, _, message) = error_of(forbidden).await?;
    assert_eq!(status, 403);
    assert!(message.contains("needs an admin key"), "{message}");
    let unknown = server.http.get(server.url("/v1/functions")).header("x-muon-tenant", "nobody").send().await?;
    assert_eq!(unknown.status(), 404);
    Ok(())
}

async fn other_tenants_things_are_404_on_every_route(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let acme = client_with_key(Some(&server.create_tenant("acme").await?))?;
    server.deploy_ok("private", "hello", "").await?;
    server.deploy_ok("csv", "preprocess-csv", "").await?;
    let default_key: Value = server.http.post(server.url("/v1/tenants/default/keys")).send().await?.json().await?;
    let default_key_id = default_key["id"].as_str().unwrap().to_owned();
    let default_user = client_with_key(default_key["key"].as_str())?;

    let attempts = [
        acme.get(server.url("/fn/default/private")),
        acme.get(server.url("/fn/default/private/deeper")),
        acme.get(server.url("/v1/functions/private")),
        acme.delete(server.url("/v1/functions/private")),
        acme.post(server.url("/v1/functions/private/rollback")),
        acme.post(server.url("/v1/functions/csv/invoke")).body("{}"),
        acme.post(server.url("/v1/tenants/default/keys")),
        acme.get(server.url("/v1/tenants/default/quotas")),
        acme.delete(server.url(&format!("/v1/keys/{default_key_id}"))),
        acme.get(server.url("/v1/usage?tenant=default")),
        acme.get(server.url("/v1/usage/records?tenant=default")),
        // and a non-admin key of `default` against acme
        default_user.get(server.url("/fn/acme/anything")),
        default_user.get(server.url("/v1/usage?tenant=acme")),
    ];
    for attempt in attempts {
        let peek = attempt.try_clone().map(|a| a.build()).transpose()?;
        let label = peek.map(|r| format!("{} {}?{}", r.method(), r.url().path(), r.url().query().unwrap_or_default()));
        let response = attempt.send().await?;
        let (status, code, _) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{label:?}");
    }
    // Still there for its owner.
    assert_eq!(server.http.get(server.url("/fn/default/private")).send().await?.status(), 200);
    assert_eq!(default_user.get(server.url("/fn/default/private")).send().await?.status(), 200);
    Ok(())
}

async fn public_functions_need_no_key(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    server.deploy_ok("open", "hello", "public=true").await?;
    server.deploy_ok("closed", "hello", "").await?;
    let anonymous = client_with_key(None)?;
    assert_eq!(anonymous.get(server.url("/fn/default/open")).send().await?.text().await?, "hello, world!\n");
    let (status, code, _) = error_of(anonymous.get(server.url("/fn/default/closed")).send().await?).await?;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, _, _) = error_of(anonymous.get(server.url("/fn/default/missing")).send().await?).await?;
    assert_eq!(status, 401, "without a key, missing and private look the same");
    Ok(())
}

async fn revoked_keys_stop_working_at_once(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    server.create_tenant("acme").await?;
    let issued: Value = server.http.post(server.url("/v1/tenants/acme/keys")).send().await?.json().await?;
    let key = issued["key"].as_str().unwrap().to_owned();
    let client = client_with_key(Some(&key))?;
    assert_eq!(client.get(server.url("/v1/functions")).send().await?.status(), 200);
    // A tenant may revoke its own keys.
    let id = issued["id"].as_str().unwrap();
    assert_eq!(client.delete(server.url(&format!("/v1/keys/{id}"))).send().await?.status(), 200);
    assert_eq!(client.get(server.url("/v1/functions")).send().await?.status(), 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_postgres_catalog_and_ledger() -> anyhow::Result<()> {
    let url = muon_tests::fresh_postgres_database()?;
    let first = Server::start(&["--database-url", &url]).await?;
    let second = Server::start(&["--database-url", &url]).await?;
    // The second node did not create the admin key; it uses the first's.
    let second_http = client_with_key(Some(&first.admin_key))?;
    first.deploy_ok("hello", "hello", "").await?;
    let mut served = None;
    for _ in 0..50 {
        let response = second_http.get(second.url("/fn/default/hello")).send().await?;
        if response.status() == 200 {
            served = Some(response.text().await?);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some("hello, world!\n"), "deployed on one node, served by the other");
    assert_eq!(first.get_fn("hello", "").await?.status(), 200);
    // A node's usage reaches the database within a second (its journal's moves).
    let mut records = first.usage_records(&first.http, None).await?;
    for _ in 0..60 {
        if records.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        records = first.usage_records(&first.http, None).await?;
    }
    assert_eq!(records.len(), 2, "usage of both nodes in one query: {records:#?}");
    Ok(())
}

/// Issue 9: one tenant's keys flooding `/v1` (deploys, uploads) took the
/// host from every other tenant. The management API has a per-tenant rate
/// limit; invocations and admin keys are outside it.
#[tokio::test(flavor = "multi_thread")]
async fn the_management_api_is_rate_limited_per_tenant() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let acme = client_with_key(Some(&server.create_tenant("acme").await?))?;
    let quotas = json!({ "api_requests_per_second": 3 });
    server.http.put(server.url("/v1/tenants/acme/quotas")).json(&quotas).send().await?.error_for_status()?;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = acme.get(server.url("/v1/functions")).send().await?;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            let (_, code, _) = error_of(response).await?;
            assert_eq!(code, "rate_limited");
        }
    }
    assert!(statuses.iter().filter(|&&s| s == 200).count() <= 4, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // Another tenant and the admin are not limited by acme's flood.
    for _ in 0..10 {
        assert_eq!(server.http.get(server.url("/v1/functions")).send().await?.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(acme.get(server.url("/v1/functions")).send().await?.status(), 200, "the bucket refills");
    Ok(())
}
