//! The operator's hold on the host: admin keys cannot be lost through the API,
//! a lost one is recovered on the machine, key issuance is bounded, `/metrics`
//! is for operators only, and shutdown is visible to a load balancer.

use std::process::Command;
use std::time::Duration;

use muon_tests::{Backend, Server, client_with_key, error_of, muon_bin};
use serde_json::{Value, json};

crate::on_both_databases!(
    admin_keys_cannot_be_revoked_by_users_or_all_revoked,
    a_lost_admin_key_is_recovered_by_the_cli_and_at_start,
    key_issuance_is_bounded_by_a_quota_even_in_parallel,
);

/// Runs `sql` on the server's database and returns the rows, one a line.
fn query(server: &Server, database_url: Option<&str>, sql: &str) -> anyhow::Result<String> {
    let output = match database_url {
        Some(url) => Command::new("psql").args([url, "-qtA", "-c", sql]).output()?,
        None => Command::new("sqlite3").arg(server.data_dir.join("muon.db")).arg(sql).output()?,
    };
    anyhow::ensure!(output.status.success(), "`{sql}` failed: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The database URL for `backend` (`None`: SQLite in the data directory) and the server flags naming it.
fn database(backend: Backend) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let flags = backend.flags()?;
    Ok((flags.get(1).cloned(), flags))
}

async fn issue_key(server: &Server, client: &reqwest::Client, body: Value) -> anyhow::Result<reqwest::Response> {
    Ok(client.post(server.url("/v1/tenants/default/keys")).json(&body).send().await?)
}

async fn admin_keys_cannot_be_revoked_by_users_or_all_revoked(backend: Backend) -> anyhow::Result<()> {
    let (database_url, flags) = database(backend)?;
    let server = Server::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let first_admin = query(&server, database_url.as_deref(), "SELECT id FROM api_keys WHERE admin = 1")?;
    let first_admin = first_admin.trim();
    assert!(first_admin.starts_with("key_") && !first_admin.contains('\n'), "one admin key at start: {first_admin}");
    let user: Value = issue_key(&server, &server.http, json!({})).await?.json().await?;
    let user = client_with_key(user["key"].as_str())?;

    // A plain key of tenant `default` can neither revoke nor mint admin keys.
    let (status, code, message) =
        error_of(user.delete(server.url(&format!("/v1/keys/{first_admin}"))).send().await?).await?;
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    let (status, _, _) = error_of(issue_key(&server, &user, json!({ "admin": true })).await?).await?;
    assert_eq!(status, 403);
    assert_eq!(server.http.get(server.url("/v1/tenants")).send().await?.status(), 200, "the admin key still works");

    // The last live admin key cannot be revoked, not even by itself.
    let (status, code, message) =
        error_of(server.http.delete(server.url(&format!("/v1/keys/{first_admin}"))).send().await?).await?;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert!(message.contains("last live admin key") && message.contains("issue another admin key first"), "{message}");

    // With a second admin key, the first can go; then the second is the last.
    let second = issue_key(&server, &server.http, json!({ "admin": true })).await?;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await?;
    let second_admin = client_with_key(second["key"].as_str())?;
    assert_eq!(
        second_admin.get(server.url("/v1/tenants")).send().await?.status(),
        200,
        "a new admin key is an admin key"
    );
    let revoked = second_admin.delete(server.url(&format!("/v1/keys/{first_admin}"))).send().await?;
    assert_eq!(revoked.status(), 200);
    assert_eq!(server.http.get(server.url("/v1/tenants")).send().await?.status(), 401);
    let second_id = second["id"].as_str().unwrap();
    let (status, _, _) =
        error_of(second_admin.delete(server.url(&format!("/v1/keys/{second_id}"))).send().await?).await?;
    assert_eq!(status, 409);
    assert_eq!(second_admin.get(server.url("/v1/tenants")).send().await?.status(), 200);
    Ok(())
}

/// Runs `muon admin reset-key` for a server's data directory and database.
fn reset_key(server: &Server, database_url: Option<&str>) -> anyhow::Result<std::process::Output> {
    let mut command = Command::new(muon_bin());
    command.args(["admin", "reset-key", "--data-dir"]).arg(&server.data_dir).env_remove("MUON_DATABASE_URL");
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    Ok(command.output()?)
}

fn admin_key_file(server: &Server) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(server.data_dir.join("admin.key"))?.trim().to_owned())
}

/// Revokes every admin key in the database, behind the server's back.
fn revoke_all_admin_keys(server: &Server, database_url: Option<&str>) -> anyhow::Result<()> {
    query(server, database_url, "UPDATE api_keys SET revoked_at_ms = 1 WHERE admin = 1").map(drop)
}

async fn a_lost_admin_key_is_recovered_by_the_cli_and_at_start(backend: Backend) -> anyhow::Result<()> {
    let (database_url, flags) = database(backend)?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&flags).await?;
    let old_key = server.admin_key.clone();

    // On the machine, with the server running: a new admin key in admin.key.
    let out = reset_key(&server, database_url.as_deref())?;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("new admin key key_"), "{out:?}");
    let new_key = admin_key_file(&server)?;
    assert_ne!(new_key, old_key);
    assert_eq!(client_with_key(Some(&new_key))?.get(server.url("/v1/tenants")).send().await?.status(), 200);

    // A mistyped data directory makes no stray database.
    let stray = tempfile::tempdir()?;
    let out = Command::new(muon_bin())
        .args(["admin", "reset-key", "--data-dir"])
        .arg(stray.path())
        .env_remove("MUON_DATABASE_URL")
        .output()?;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no database at"), "{out:?}");
    assert!(!stray.path().join("admin.key").exists());

    // Every admin key revoked (as an older muon let a plain key do): the
    // next start makes a live one and writes it over the dead one.
    revoke_all_admin_keys(&server, database_url.as_deref())?;
    tokio::time::sleep(Duration::from_secs(3)).await; // past the key cache
    assert_eq!(client_with_key(Some(&new_key))?.get(server.url("/v1/tenants")).send().await?.status(), 401);
    let (temp, data_dir) = (server.temp(), server.data_dir.clone());
    assert_eq!(server.stop().await?, Some(0));
    let restarted = Server::start_in(&data_dir, &flags, temp).await?;
    assert!(!restarted.admin_key.is_empty() && restarted.admin_key != new_key, "admin.key does not keep a dead key");
    assert_eq!(restarted.http.get(restarted.url("/v1/tenants")).send().await?.status(), 200);
    Ok(())
}

async fn key_issuance_is_bounded_by_a_quota_even_in_parallel(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let shown: Value = server.http.get(server.url("/v1/tenants/default/quotas")).send().await?.json().await?;
    assert_eq!(shown["quotas"]["max_keys"], 100, "a documented default, never unlimited");

    let acme = server.create_tenant("acme").await?; // its first live key
    let set = server.http.put(server.url("/v1/tenants/acme/quotas")).json(&json!({ "max_keys": 4 })).send().await?;
    assert_eq!(set.status(), 200);
    let acme = client_with_key(Some(&acme))?;
    let issues = (0..12).map(|_| {
        let request = acme.post(server.url("/v1/tenants/acme/keys"));
        async move { anyhow::Ok(request.send().await?) }
    });
    let mut issued = Vec::new();
    for response in futures_util::future::join_all(issues).await {
        let response = response?;
        match response.status().as_u16() {
            201 => issued.push(response.json::<Value>().await?),
            _ => {
                let (status, code, message) = error_of(response).await?;
                assert_eq!((status, code.as_str()), (429, "quota_exceeded"), "{message}");
                assert!(message.contains("4 live keys"), "{message}");
            }
        }
    }
    assert_eq!(issued.len(), 3, "one key plus three fills a limit of four");

    // A revoked key frees its place.
    let id = issued[0]["id"].as_str().unwrap();
    assert_eq!(acme.delete(server.url(&format!("/v1/keys/{id}"))).send().await?.status(), 200);
    assert_eq!(acme.post(server.url("/v1/tenants/acme/keys")).send().await?.status(), 201);
    assert_eq!(acme.post(server.url("/v1/tenants/acme/keys")).send().await?.status(), 429);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_case_insensitive() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let response = reqwest::Client::new()
            .get(server.url("/v1/functions"))
            .header("authorization", format!("{scheme} {}", server.admin_key))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let basic = reqwest::Client::new()
        .get(server.url("/v1/functions"))
        .header("authorization", format!("Basic {}", server.admin_key));
    assert_eq!(basic.send().await?.status(), 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_for_the_admin_key_only() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("secret-fn", "hello", "").await?;
    assert_eq!(server.get_fn("secret-fn", "").await?.status(), 200);
    let user: Value = issue_key(&server, &server.http, json!({})).await?.json().await?;
    let acme = server.create_tenant("acme").await?;
    for (who, key, status) in [
        ("anonymous", None, 401),
        ("a plain key", user["key"].as_str(), 403),
        ("another tenant", Some(acme.as_str()), 403),
    ] {
        let response = client_with_key(key)?.get(server.url("/metrics")).send().await?;
        assert_eq!(response.status(), status, "{who}");
        let text = response.text().await?;
        assert!(!text.contains("secret-fn") && !text.contains("muon_"), "{who} sees metrics: {text}");
    }
    let text = server.http.get(server.url("/metrics")).send().await?.text().await?;
    assert!(text.contains("muon_requests_total{function=\"default/secret-fn\",outcome=\"ok\"} 1"), "{text}");
    Ok(())
}

/// A free port on loopback (bound, then let go).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_listen_serves_a_scraper_without_a_key() -> anyhow::Result<()> {
    let port = free_port()?;
    let address = format!("127.0.0.1:{port}");
    let server = Server::start(&["--metrics-listen", &address]).await?;
    server.deploy_ok("scraped", "hello", "").await?;
    assert_eq!(server.get_fn("scraped", "").await?.status(), 200);
    let scraper = client_with_key(None)?;
    let response = scraper.get(format!("http://{address}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    assert!(response.text().await?.contains("muon_requests_total{function=\"default/scraped\",outcome=\"ok\"} 1"));
    let (status, _, _) = error_of(scraper.get(format!("http://{address}/v1/functions")).send().await?).await?;
    assert_eq!(status, 404, "the metrics address serves nothing else");
    assert_eq!(
        scraper.get(server.url("/metrics")).send().await?.status(),
        401,
        "the main listener still needs the admin key"
    );
    Ok(())
}

async fn exposition(server: &Server) -> anyhow::Result<String> {
    Ok(server.http.get(server.url("/metrics")).send().await?.error_for_status()?.text().await?)
}

async fn deploy_call_delete(server: &Server, name: &str) -> anyhow::Result<()> {
    server.deploy_ok(name, "hello", "").await?;
    anyhow::ensure!(server.get_fn(name, "").await?.status() == 200, "{name} did not answer");
    let deleted = server.http.delete(server.url(&format!("/v1/functions/{name}"))).send().await?;
    anyhow::ensure!(deleted.status() == 200, "{name} was not deleted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_functions_leave_no_series() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("kept", "hello", "").await?;
    assert_eq!(server.get_fn("kept", "").await?.status(), 200);
    deploy_call_delete(&server, "warm-up").await?;
    // A usage query waits for the ledger to move what it journaled: every
    // process-wide series exists now, the ledger's included.
    server.usage_records(&server.http, None).await?;
    let before = exposition(&server).await?;
    for n in 0..50 {
        deploy_call_delete(&server, &format!("gone-{n}")).await?;
    }
    let after = exposition(&server).await?;
    assert!(!after.contains("gone-"), "a deleted function's series remain:\n{after}");
    assert!(after.contains("function=\"default/kept\""), "{after}");
    assert!(after.len() < before.len() + 1024, "grew from {} to {} bytes", before.len(), after.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_answers_503_during_shutdown() -> anyhow::Result<()> {
    let mut server = Server::start(&["--shutdown-grace-ms", "10000"]).await?;
    server.deploy_ok("slow", "fixture-sleep", "").await?;
    let in_flight = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/slow?ms=3000"));
        async move { anyhow::Ok(request.send().await?.text().await?) }
    });
    // SIGTERM only once the request is running: a server with nothing in
    // flight exits at once, as it should.
    let running = "muon_instances_in_flight{function=\"default/slow\"}";
    for _ in 0..100 {
        if server.metric(running).await? == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM")?;
    // A load balancer's probe: a new connection each time.
    let probe = || reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build();
    let mut seen = None;
    for _ in 0..40 {
        // A connection the kernel took just before the signal reached the
        // server is closed unanswered by the graceful shutdown; a load
        // balancer retries it, and so does this probe.
        let Ok(response) = probe()?.get(server.url("/readyz")).send().await else {
            continue;
        };
        if response.status() == 503 {
            seen = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = seen.ok_or_else(|| anyhow::anyhow!("/readyz never answered 503 during shutdown"))?;
    assert_eq!(ready.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    let (status, code, message) = error_of(ready).await?;
    assert_eq!((status, code.as_str()), (503, "unavailable"), "{message}");
    let (status, _, _) = error_of(
        probe()?
            .get(server.url("/fn/default/slow?ms=1"))
            .header("authorization", format!("Bearer {}", server.admin_key))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 503, "no new work while stopping");
    assert_eq!(probe()?.get(server.url("/healthz")).send().await?.status(), 200, "alive until it exits");
    assert_eq!(in_flight.await??, "woke up", "the request in flight finishes");
    assert_eq!(server.wait(Duration::from_secs(10)).await?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_dates_that_overflow_are_400_naming_the_parameter() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for (query, parameter) in [
        ("from=99999999999999999-01-01", "`from`"),
        ("from=9223372036854775807-12-31", "`from`"),
        ("to=2023-02-29", "`to`"),
        ("from=2024-01-01&to=10000-01-01", "`to`"),
    ] {
        let response = server.http.get(server.url(&format!("/v1/usage?{query}"))).send().await?;
        let (status, code, message) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{query}: {message}");
        assert!(message.contains(parameter), "{query}: {message}");
    }
    let fine = server.http.get(server.url("/v1/usage?from=2024-02-29&to=9999-12-31")).send().await?;
    assert_eq!(fine.status(), 200);
    Ok(())
}
