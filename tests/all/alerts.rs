//! Alerts, alert sinks and the audit log over HTTP: sinks registered,
//! replaced, listed without their secrets and deleted; bad URLs refused;
//! every route scoped to the caller's tenant (another's sink, alerts and
//! events are `404` or absent); job state changes in `GET /v1/events`; and
//! the CLI (`muon alerts`, `muon events --follow`) against a live server.
//!
//! Delivery itself (Alertmanager's payload, the signature, retries, the
//! outbound policy) is tested in `host/src/monitor/sinks_tests.rs` against
//! a real receiver; an alert fired end to end needs the detectors.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use muon_tests::{Backend, Server, error_of, muon_bin};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::jobs::{linear_setup, linear_spec, submit, wait_over};

crate::on_both_databases!(sinks_are_a_tenants_own_and_never_show_their_secret, job_state_changes_are_events);

const SECRET: &str = "hunter2-very-secret";

async fn put_sink(
    server: &Server,
    client: &reqwest::Client,
    name: &str,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    Ok(client.put(server.url(&format!("/v1/alerts/sinks/{name}"))).json(body).send().await?)
}

async fn get_json(client: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    let response = client.get(&url).send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status == 200, "GET {url} answered {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

async fn sinks_are_a_tenants_own_and_never_show_their_secret(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    let hook = json!({"url": "https://alerts.example.com/hook", "secret": SECRET});
    let created = put_sink(&server, &server.http, "pager", &hook).await?;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await?;
    assert_eq!(
        (created["name"].as_str(), created["url"].as_str()),
        (Some("pager"), Some("https://alerts.example.com/hook"))
    );
    assert!(created.get("secret").is_none(), "{created}");
    let moved = json!({"url": "http://alerts.example.com:8080/v2", "secret": "another"});
    assert_eq!(put_sink(&server, &server.http, "pager", &moved).await?.status(), 200, "a replacement");
    put_sink(&server, &server.http, "chat", &hook).await?.error_for_status()?;

    let listed = server.http.get(server.url("/v1/alerts/sinks")).send().await?.text().await?;
    assert!(!listed.contains(SECRET) && !listed.contains("another"), "{listed}");
    let listed: Value = serde_json::from_str(&listed)?;
    let names: Vec<&str> = listed["sinks"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["chat", "pager"]);
    assert_eq!(listed["sinks"][1]["url"], "http://alerts.example.com:8080/v2");

    // Bad requests, each a 400 that says what is wrong.
    for (name, body, says) in [
        ("pager", json!({"url": "ftp://alerts.example.com/", "secret": "s"}), "http or https"),
        ("pager", json!({"url": "alerts.example.com/hook", "secret": "s"}), "http or https"),
        ("pager", json!({"url": "http://user:pw@alerts.example.com/", "secret": "s"}), "invalid sink URL"),
        ("pager", json!({"url": "http://127.0.0.1:9093/", "secret": "s"}), "private"),
        ("pager", json!({"url": "http://[::1]/", "secret": "s"}), "private"),
        ("pager", json!({"url": "https://alerts.example.com/", "secret": ""}), "secret"),
        ("pager", json!({"url": "https://alerts.example.com/", "secret": "s", "extra": 1}), "extra"),
        ("pager", json!({"url": "https://alerts.example.com/"}), "secret"),
        ("Bad_Name", hook.clone(), "invalid sink name"),
    ] {
        let (status, code, message) = error_of(put_sink(&server, &server.http, name, &body).await?).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{body}: {message}");
        assert!(message.contains(says), "{body}: {message}");
    }
    for query in ["state=open", "limit=0", "status=firing"] {
        let (status, _, message) =
            error_of(server.http.get(server.url(&format!("/v1/alerts?{query}"))).send().await?).await?;
        assert_eq!(status, 400, "{query}: {message}");
    }
    let (status, _, message) = error_of(server.http.get(server.url("/v1/events?since=1")).send().await?).await?;
    assert!(status == 400 && message.contains("unknown parameter `since`"), "{message}");

    // Another tenant: sees none of it, cannot delete it, has its own namespace.
    let other = server.with_key(&server.create_tenant("other").await?)?;
    let theirs = get_json(&other, server.url("/v1/alerts/sinks")).await?;
    assert_eq!(theirs["sinks"], json!([]));
    let (status, code, _) = error_of(other.delete(server.url("/v1/alerts/sinks/pager")).send().await?).await?;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert_eq!(put_sink(&server, &other, "pager", &hook).await?.status(), 201, "its own sink of the same name");
    let ours = get_json(&server.http, server.url("/v1/alerts/sinks")).await?;
    assert_eq!(ours["sinks"][1]["url"], "http://alerts.example.com:8080/v2", "untouched by the other tenant");
    assert_eq!(get_json(&other, server.url("/v1/alerts?state=firing")).await?["alerts"], json!([]));

    let deleted = server.http.delete(server.url("/v1/alerts/sinks/pager")).send().await?;
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.json::<Value>().await?["deleted"], "pager");
    let (status, _, _) = error_of(server.http.delete(server.url("/v1/alerts/sinks/pager")).send().await?).await?;
    assert_eq!(status, 404);
    assert_eq!(get_json(&other, server.url("/v1/alerts/sinks")).await?["sinks"][0]["name"], "pager", "theirs stays");
    Ok(())
}

/// `GET /v1/events?kind=job_state` of `client`'s tenant: (subject, state) pairs, oldest first.
async fn job_states(server: &Server, client: &reqwest::Client) -> anyhow::Result<Vec<(String, String)>> {
    let page = get_json(client, server.url("/v1/events?kind=job_state")).await?;
    Ok(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["subject"].as_str().unwrap().to_owned(), e["detail"]["state"].as_str().unwrap().to_owned()))
        .collect())
}

async fn job_state_changes_are_events(backend: Backend) -> anyhow::Result<()> {
    let server = Server::start_on(backend, &[]).await?;
    linear_setup(&server).await?;
    let done = submit(&server, &server.http, &linear_spec(2, json!({}))).await?;
    assert_eq!(wait_over(&server, &server.http, &done).await?["state"], "succeeded");
    let cancelled = submit(&server, &server.http, &linear_spec(100_000, json!({}))).await?;
    server.http.post(server.url(&format!("/v1/jobs/{cancelled}/cancel"))).send().await?.error_for_status()?;

    let states = job_states(&server, &server.http).await?;
    let of = |id: &str| states.iter().filter(|(subject, _)| subject == id).map(|(_, s)| s.as_str()).collect::<Vec<_>>();
    assert_eq!(of(&done), ["queued", "running", "succeeded"], "{states:?}");
    let cancelled_states = of(&cancelled);
    assert!(
        cancelled_states == ["queued", "cancelled"] || cancelled_states == ["queued", "running", "cancelled"],
        "{states:?}"
    );

    // Paging: one event at a time with `after`, and nothing past the end.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page =
            get_json(&server.http, server.url(&format!("/v1/events?kind=job_state&limit=1&after={after}"))).await?;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(page["next_after"], after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(events.len(), 1);
        assert!(events[0]["id"].as_i64().unwrap() > after);
        after = page["next_after"].as_i64().unwrap();
        assert_eq!(events[0]["id"], after);
        seen.push(events[0]["subject"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.len(), states.len());
    let all = get_json(&server.http, server.url("/v1/events")).await?;
    assert!(all["events"].as_array().unwrap().iter().all(|e| e["kind"].is_string() && e["at_ms"].is_i64()));

    // Another tenant sees none of these events.
    let other = server.with_key(&server.create_tenant("other").await?)?;
    assert_eq!(get_json(&other, server.url("/v1/events")).await?["events"], json!([]));
    assert!(job_states(&server, &other).await?.is_empty());
    Ok(())
}

/// `muon` speaking to `server` with its admin key.
fn muon(server: &Server) -> Command {
    let mut command = Command::new(muon_bin());
    command.env("MUON_SERVER", &server.base).env("MUON_DATA_DIR", &server.data_dir).env_remove("MUON_API_KEY");
    command
}

fn run(server: &Server, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = muon(server).args(args).stdin(Stdio::null()).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_sinks_and_follows_events() -> anyhow::Result<()> {
    // Loopback sinks allowed, as an operator running a local receiver would.
    let server = Server::start(&["--monitor-allow-private-sinks", "true"]).await?;
    let (ok, out, err) =
        run(&server, &["alerts", "sinks", "put", "local", "--url", "http://127.0.0.1:9093/hook", "--secret", SECRET])?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "sink local posts alerts to http://127.0.0.1:9093/hook");
    let (ok, out, _) = run(&server, &["alerts", "sinks", "list"])?;
    assert!(ok && out.lines().any(|l| l.starts_with("local") && l.contains("http://127.0.0.1:9093/hook")), "{out}");
    assert!(!out.contains(SECRET));
    let (ok, out, _) = run(&server, &["alerts", "sinks", "list", "--json"])?;
    let listed: Value = serde_json::from_str(&out)?;
    assert!(ok && listed["sinks"][0]["name"] == "local", "{out}");
    let (ok, out, _) = run(&server, &["alerts"])?;
    assert!(ok && out.trim() == "no alerts", "{out}");
    let (ok, _, err) = run(&server, &["alerts", "--state", "open"])?;
    assert!(!ok && err.contains("--state must be firing or resolved"), "{err}");
    let (ok, out, _) = run(&server, &["alerts", "sinks", "delete", "local"])?;
    assert!(ok && out.trim() == "deleted sink local", "{out}");
    let (ok, _, err) = run(&server, &["alerts", "sinks", "delete", "local"])?;
    assert!(!ok && err.contains("404 not_found"), "{err}");

    // `muon events --follow` prints a job's state changes as they happen.
    let mut follow = tokio::process::Command::new(muon_bin())
        .env("MUON_SERVER", &server.base)
        .env("MUON_DATA_DIR", &server.data_dir)
        .env_remove("MUON_API_KEY")
        .args(["events", "--follow", "--kind", "job_state", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    linear_setup(&server).await?;
    let id = submit(&server, &server.http, &linear_spec(2, json!({}))).await?;
    let started = Instant::now();
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("succeeded") {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        let line = tokio::time::timeout(left, lines.next_line()).await??.unwrap_or_default();
        let event: Value = serde_json::from_str(&line)?;
        assert_eq!(event["subject"], id.as_str(), "{line}");
        states.push(event["detail"]["state"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(states, ["queued", "running", "succeeded"]);
    follow.start_kill()?;
    follow.wait().await?;

    // Without --follow: the page, for people.
    let (ok, out, _) = run(&server, &["events", "--kind", "job_state"])?;
    assert!(ok && out.lines().count() == 3 && out.contains(&format!("job {id} succeeded")), "{out}");
    let (ok, out, _) = run(&server, &["events", "--kind", "job_state", "--after", "999999"])?;
    assert!(ok && out.trim() == "no events", "{out}");
    Ok(())
}
