//! The circuit breaker (issue 13, item 4), `/readyz` as JSON and the alert
//! metrics (item 5).

use std::time::Duration;

use muon::api::{Readiness, ReadyStatus};
use muon::db::Db;
use muon_tests::{Backend, Server, client_with_key, error_of};
use serde_json::json;

crate::on_both_databases!(a_breaker_opens_after_failures_in_a_row_refuses_then_lets_one_call_decide);

/// `GET /fn/default/{name}{rest}`: the status, the error code if any, and `Retry-After`.
async fn call(server: &Server, name: &str, rest: &str) -> anyhow::Result<(u16, String, Option<String>)> {
    let response = server.get_fn(name, rest).await?;
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if response.status() == 200 {
        return Ok((200, String::new(), retry_after));
    }
    let (status, code, _) = error_of(response).await?;
    Ok((status, code, retry_after))
}

async fn readyz(client: &reqwest::Client, server: &Server) -> anyhow::Result<(u16, Readiness)> {
    let response = client.get(server.url("/readyz")).send().await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn a_breaker_opens_after_failures_in_a_row_refuses_then_lets_one_call_decide(
    backend: Backend,
) -> anyhow::Result<()> {
    let flags = backend.flags()?;
    let server = Server::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let deployed = server.deploy_ok("flaky", "fixture-panic", "breaker_failures=3&breaker_cooldown_s=1").await?;
    assert_eq!(deployed["breaker"], json!({ "failures": 3, "cooldown_s": 1 }));
    let plain = server.deploy_ok("plain", "fixture-panic", "").await?;
    assert_eq!(plain["breaker"], json!(null));

    // Failures in a row: a success in between starts the count again.
    for rest in ["", "", "?calm", "", ""] {
        assert_ne!(call(&server, "flaky", rest).await?.1, "circuit_open");
    }
    assert_eq!(call(&server, "flaky", "").await?.1, "trap", "the third failure in a row runs, and opens it");
    let (status, code, retry_after) = call(&server, "flaky", "?calm").await?;
    assert_eq!((status, code.as_str(), retry_after.as_deref()), (503, "circuit_open", Some("1")));
    let traps = "muon_requests_total{function=\"default/flaky\",outcome=\"trap\"}";
    assert_eq!(server.metric(traps).await?, Some(5.0), "the refused call did not run the guest");
    let records = server.usage_records(&server.http, None).await?;
    let refused: Vec<_> = records.iter().filter(|r| r["outcome"] == "circuit_open").collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!((refused[0]["cost_micros"].as_i64(), refused[0]["cpu_us"].as_i64()), (Some(0), Some(0)));

    // /readyz: degraded; the name only for an admin key.
    let (status, ready) = readyz(&server.http, &server).await?;
    assert_eq!((status, ready.status), (200, ReadyStatus::Degraded));
    assert_eq!(
        (ready.checks.breakers.count, ready.checks.breakers.names.clone()),
        (Some(1), vec!["default/flaky".to_owned()])
    );
    let (_, anonymous) = readyz(&client_with_key(None)?, &server).await?;
    assert_eq!((anonymous.checks.breakers.count, anonymous.checks.breakers.names.len()), (Some(1), 0));

    // After the cool-down one call runs; it fails, so the breaker opens again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&server, "flaky", "").await?.1, "trap");
    assert_eq!(call(&server, "flaky", "?calm").await?.1, "circuit_open");
    // Next time it succeeds and closes the breaker: failures run again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&server, "flaky", "?calm").await?.0, 200);
    assert_eq!(call(&server, "flaky", "").await?.1, "trap");
    assert_eq!(readyz(&server.http, &server).await?.1.status, ReadyStatus::Ok);

    // Without the option nothing changes.
    for _ in 0..6 {
        assert_eq!(call(&server, "plain", "").await?.1, "trap");
    }

    // Opening and closing are in the audit log; the second opening, from
    // half-open, is not a new one.
    let db = match backend {
        Backend::Sqlite => Db::open_sqlite(&server.data_dir).await?,
        Backend::Postgres => Db::connect(&flags[1]).await?,
    };
    let mut states = Vec::new();
    for _ in 0..50 {
        let events = db.audit_events("default", 0, Some("breaker"), 100).await?;
        states = events
            .iter()
            .map(|e| {
                let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
                (e.subject.clone(), detail["state"].as_str().map(str::to_owned))
            })
            .collect();
        if states.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = |state: &str| ("flaky".to_owned(), Some(state.to_owned()));
    assert_eq!(states, vec![expected("open"), expected("closed")]);
    Ok(())
}

/// Timeouts count as failures too, and while the one half-open call runs,
/// the others are still refused.
#[tokio::test(flavor = "multi_thread")]
async fn half_open_lets_one_call_through_at_a_time() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("nap", "fixture-sleep", "timeout_ms=1000&breaker_failures=2&breaker_cooldown_s=1").await?;
    for _ in 0..2 {
        assert_eq!(call(&server, "nap", "?ms=5000").await?.1, "timeout");
    }
    assert_eq!(call(&server, "nap", "?ms=1").await?.1, "circuit_open");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let probe = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/nap?ms=600"));
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    });
    // Only once the half-open call is running.
    let running = "muon_instances_in_flight{function=\"default/nap\"}";
    for _ in 0..100 {
        if server.metric(running).await? == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, code, retry_after) = call(&server, "nap", "?ms=1").await?;
    assert_eq!((status, code.as_str(), retry_after.as_deref()), (503, "circuit_open", Some("1")));
    assert_eq!(probe.await??, 200);
    assert_eq!(call(&server, "nap", "?ms=1").await?.0, 200, "the probe's success closed it");
    Ok(())
}

/// `/readyz` of a healthy node, the breaker options checked at deploy, and
/// the alert metrics named before any alert.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_reports_checks_and_metrics_name_the_alert_series() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (status, ready) = readyz(&client_with_key(None)?, &server).await?;
    assert_eq!((status, ready.status, ready.error), (200, ReadyStatus::Ok, None));
    let checks = &ready.checks;
    for (name, check) in [
        ("accepting", &checks.accepting),
        ("database", &checks.database),
        ("ledger", &checks.ledger),
        ("models", &checks.models),
        ("sinks", &checks.sinks),
        ("breakers", &checks.breakers),
    ] {
        assert!(check.ok && check.message.is_none(), "{name}: {check:?}");
    }
    assert_eq!(checks.breakers.count, Some(0));
    let raw: serde_json::Value = server.http.get(server.url("/readyz")).send().await?.json().await?;
    assert_eq!(raw["status"], "ok");
    assert_eq!(raw["checks"]["ledger"]["ok"], true, "{raw}");

    for (query, wanted) in [
        ("breaker_cooldown_s=5", "needs breaker_failures"),
        ("breaker_failures=0", "breaker_failures=0 is outside"),
        ("breaker_failures=2&breaker_cooldown_s=0", "breaker_cooldown_s=0 is outside"),
        ("breaker_failures=x", "breaker_failures must be"),
    ] {
        let (status, code, message) = error_of(server.deploy("bad", "hello", query).await?).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{query}");
        assert!(message.contains(wanted), "{query}: {message}");
    }

    let text = server.http.get(server.url("/metrics")).send().await?.text().await?;
    for expected in ["# TYPE muon_alerts_firing gauge", "# TYPE muon_alerts_total counter"] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    Ok(())
}

/// Versions share the breaker while its settings stay the same: a redeploy
/// or a rollback does not close an open one; new settings start afresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_keeps_an_open_breaker_unless_its_settings_change() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let strict = "breaker_failures=1&breaker_cooldown_s=60";
    server.deploy_ok("flaky", "fixture-panic", strict).await?;
    assert_eq!(call(&server, "flaky", "").await?.1, "trap");
    assert_eq!(call(&server, "flaky", "?calm").await?.1, "circuit_open");
    server.deploy_ok("flaky", "fixture-panic", strict).await?;
    let (status, code, retry_after) = call(&server, "flaky", "?calm").await?;
    assert_eq!((status, code.as_str()), (503, "circuit_open"), "still open after a redeploy");
    assert!(retry_after.and_then(|s| s.parse::<u32>().ok()).is_some_and(|s| (55..=60).contains(&s)));
    let rolled = server.http.post(server.url("/v1/functions/flaky/rollback")).send().await?;
    assert_eq!(rolled.status(), 200);
    assert_eq!(call(&server, "flaky", "?calm").await?.1, "circuit_open", "and after a rollback");
    server.deploy_ok("flaky", "fixture-panic", "breaker_failures=2&breaker_cooldown_s=60").await?;
    assert_eq!(call(&server, "flaky", "?calm").await?.0, 200, "new settings, a new breaker");
    server.deploy_ok("flaky", "fixture-panic", "").await?;
    for _ in 0..3 {
        assert_eq!(call(&server, "flaky", "").await?.1, "trap", "no breaker");
    }
    Ok(())
}
