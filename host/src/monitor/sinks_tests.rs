//! Deliveries to a real HTTP receiver on loopback.

use std::collections::VecDeque;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

use super::*;
use crate::monitor::{Alerts, Firing};

/// What the receiver got: the request's headers and body.
type Received = (HeaderMap, Bytes);

/// An HTTP server on 127.0.0.1 that answers `statuses` in turn (then 200)
/// and hands every request it gets to the returned channel.
async fn receiver(statuses: Vec<u16>) -> anyhow::Result<(SocketAddr, mpsc::UnboundedReceiver<Received>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (sender, received) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(VecDeque::from(statuses)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (sender, statuses) = (sender.clone(), Arc::clone(&statuses));
            let service = service_fn(move |request: http::Request<Incoming>| {
                let (sender, statuses) = (sender.clone(), Arc::clone(&statuses));
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let _ = sender.send((parts.headers, body));
                    let status = lock(&statuses).pop_front().unwrap_or(200);
                    let mut response = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok((address, received))
}

/// A database, alerts, and sinks delivering from them, with short backoffs.
async fn setup(allow_private: bool, attempts: u32) -> anyhow::Result<(tempfile::TempDir, Db, Alerts, Arc<Sinks>)> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_sqlite(dir.path()).await?;
    let alerts = Alerts::new(db.clone());
    let settings = SinkSettings {
        allow_private,
        attempts,
        first_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(5),
        queue: 16,
    };
    let sinks = Arc::new(Sinks::new(db.clone(), settings));
    tokio::spawn(Arc::clone(&sinks).run(alerts.subscribe(), "http://muon.test:8080".to_owned()));
    Ok((dir, db, alerts, sinks))
}

async fn put_sink(db: &Db, name: &str, url: String) -> anyhow::Result<()> {
    let row = SinkRow {
        tenant: "acme".to_owned(),
        name: name.to_owned(),
        url,
        secret: "s3cret".to_owned(),
        created_at_ms: 1,
        last_delivery: None,
    };
    db.put_sink(&row).await
}

fn firing() -> Firing {
    Firing {
        labels: AlertLabels {
            tenant: "acme".to_owned(),
            detector: "error_rate".to_owned(),
            function: Some("checkout".to_owned()),
            version: Some(7),
            ..AlertLabels::default()
        },
        value: 0.3,
        baseline: 0.01,
        summary: "checkout v7 fails 30% of its calls (baseline 1%)".to_owned(),
    }
}

/// The sink's recorded outcome, once there is one (within 10 s).
async fn outcome(db: &Db, name: &str) -> anyhow::Result<String> {
    for _ in 0..500 {
        let sinks = db.sinks("acme").await?;
        if let Some(outcome) = sinks.iter().find(|s| s.name == name).and_then(|s| s.last_delivery.clone()) {
            return Ok(outcome);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no delivery to {name} was recorded")
}

async fn next(received: &mut mpsc::UnboundedReceiver<Received>) -> anyhow::Result<Received> {
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))
}

fn check_signed(headers: &HeaderMap, body: &[u8]) -> anyhow::Result<Value> {
    let sent = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    anyhow::ensure!(sent == signature("s3cret", body)?, "bad signature {sent}");
    anyhow::ensure!(sent != signature("other", body)?, "the signature depends on the secret");
    anyhow::ensure!(headers.get(http::header::CONTENT_TYPE).is_some_and(|v| v == "application/json"));
    Ok(serde_json::from_slice(body)?)
}

#[tokio::test]
async fn a_fired_then_resolved_alert_arrives_as_two_signed_alertmanager_payloads() -> anyhow::Result<()> {
    let (_dir, db, alerts, sinks) = setup(true, 3).await?;
    let (address, mut received) = receiver(vec![]).await?;
    put_sink(&db, "pager", format!("http://{address}/hook")).await?;
    let fired = alerts.fire(firing()).await?.ok_or_else(|| anyhow::anyhow!("not fired"))?;
    alerts.resolve(&firing().labels).await?.ok_or_else(|| anyhow::anyhow!("not resolved"))?;

    let (headers, body) = next(&mut received).await?;
    let first = check_signed(&headers, &body)?;
    assert_eq!(first["version"], "4");
    assert_eq!(first["status"], "firing");
    assert_eq!(first["receiver"], "pager");
    assert_eq!(first["truncatedAlerts"], 0);
    assert_eq!(first["externalURL"], "http://muon.test:8080");
    let alert = &first["alerts"][0];
    assert_eq!(alert["status"], "firing");
    let labels =
        serde_json::json!({"alertname": "error_rate", "tenant": "acme", "function": "checkout", "version": "7"});
    assert_eq!(alert["labels"], labels);
    assert_eq!(first["commonLabels"], labels);
    assert_eq!(first["groupLabels"], labels);
    assert_eq!(alert["annotations"]["summary"], fired.summary.as_str());
    assert_eq!(alert["annotations"]["value"], "0.3");
    assert_eq!(alert["annotations"]["baseline"], "0.01");
    assert_eq!(alert["startsAt"], crate::clock::rfc3339(fired.starts_at_ms).as_str());
    assert_eq!(alert["endsAt"], NOT_ENDED);
    assert_eq!(alert["generatorURL"], "http://muon.test:8080/v1/functions/checkout/stats");
    assert_eq!(alert["fingerprint"].as_str().map(str::len), Some(16));
    assert!(first["groupKey"].as_str().is_some_and(|k| k.contains("alertname=\"error_rate\"")), "{first}");

    let (headers, body) = next(&mut received).await?;
    let second = check_signed(&headers, &body)?;
    assert_eq!(second["status"], "resolved");
    assert_eq!(second["alerts"][0]["status"], "resolved");
    assert_ne!(second["alerts"][0]["endsAt"], NOT_ENDED);
    assert_eq!(second["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert_eq!(second["groupKey"], first["groupKey"]);
    assert_eq!(outcome(&db, "pager").await?, "ok");
    assert!(sinks.failing().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failing_receiver_gets_the_alert_on_a_later_attempt() -> anyhow::Result<()> {
    let (_dir, db, alerts, sinks) = setup(true, 5).await?;
    let (address, mut received) = receiver(vec![500, 500]).await?;
    put_sink(&db, "flaky", format!("http://{address}/")).await?;
    alerts.fire(firing()).await?;
    let bodies = [next(&mut received).await?.1, next(&mut received).await?.1, next(&mut received).await?.1];
    assert!(bodies.iter().all(|body| body == &bodies[0]), "the same payload each time");
    assert_eq!(outcome(&db, "flaky").await?, "ok");
    assert!(sinks.failing().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(received.try_recv().is_err(), "no fourth attempt after the success");

    // A receiver that keeps failing: given up after the attempts, and reported.
    let (address, mut received) = receiver(vec![503; 10]).await?;
    put_sink(&db, "dead", format!("http://{address}/")).await?;
    alerts.resolve(&firing().labels).await?;
    for _ in 0..5 {
        next(&mut received).await?;
    }
    let failed = outcome(&db, "dead").await?;
    assert!(failed.starts_with("failed after 5 attempt(s)") && failed.contains("503"), "{failed}");
    assert_eq!(sinks.failing(), vec!["acme/dead".to_owned()]);
    sinks.forget("acme", "dead");
    assert!(sinks.failing().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_private_address_is_refused_unless_allowed() -> anyhow::Result<()> {
    let (_dir, db, alerts, sinks) = setup(false, 3).await?;
    let (address, mut received) = receiver(vec![]).await?;
    // A name that resolves to loopback: refused after the lookup, not sent.
    put_sink(&db, "local", format!("http://localhost:{}/", address.port())).await?;
    alerts.fire(firing()).await?;
    let refused = outcome(&db, "local").await?;
    assert!(refused.starts_with("failed after 1 attempt(s)") && refused.contains("private"), "{refused}");
    assert_eq!(sinks.failing(), vec!["acme/local".to_owned()]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(received.try_recv().is_err(), "nothing reached the private address");
    Ok(())
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_delivery_and_counts_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_sqlite(dir.path()).await?;
    let alerts = Alerts::new(db.clone());
    let settings = SinkSettings {
        allow_private: true,
        attempts: 1,
        first_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_secs(2),
        queue: 2,
    };
    let sinks = Arc::new(Sinks::new(db.clone(), settings));
    tokio::spawn(Arc::clone(&sinks).run(alerts.subscribe(), "http://muon.test".to_owned()));
    // A sink that accepts connections and never answers: each delivery waits out its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = silent.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    put_sink(&db, "silent", format!("http://{address}/")).await?;
    for function in ["a", "b", "c", "d", "e"] {
        let mut alert = firing();
        alert.labels.function = Some(function.to_owned());
        alerts.fire(alert).await?;
    }
    // One in flight, two queued: two or three of the five were dropped.
    let failed = outcome(&db, "silent").await?;
    assert!(failed.starts_with("failed after 1 attempt(s)") && failed.contains("timeout"), "{failed}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!((2..=3).contains(&sinks.dropped()), "{} dropped", sinks.dropped());
    Ok(())
}

#[test]
fn sink_urls_are_checked() {
    for bad in ["ftp://example.com/", "example.com/hook", "http://", "http://user:pw@example.com/", "/hook", ""] {
        assert!(matches!(check_url(bad, true), Err(SinkError::InvalidUrl(_))), "{bad}");
    }
    for private in ["http://127.0.0.1:9/", "http://10.1.2.3/", "https://[::1]/", "http://169.254.169.254/latest"] {
        assert!(matches!(check_url(private, false), Err(SinkError::PrivateAddress(_))), "{private}");
        assert!(check_url(private, true).is_ok(), "{private}");
    }
    for good in ["https://alerts.example.com/hook?x=1", "http://93.184.216.34:8080/"] {
        assert!(check_url(good, false).is_ok(), "{good}");
    }
}
