//! Strangers calling a public function spend its anonymous budget, never the
//! owner's own limits (issue 9, item 6).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use muon_tests::{MIB, Server, client_with_key};
use serde_json::json;

use crate::bodies::drip;

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_callers_cannot_spend_the_owners_limits() -> anyhow::Result<()> {
    // Default settings: anonymous callers may hold half of the function's 8 instances.
    let server = Server::start(&[]).await?;
    let key = server.create_tenant("acme").await?;
    let owner = server.with_key(&key)?;
    let wasm = muon_tests::component("hello")?;
    let deployed = owner.put(server.url("/v1/functions/hello?public=true&max_concurrency=8")).body(wasm).send().await?;
    assert_eq!(deployed.status(), 201);
    let quotas = json!({ "max_concurrent_requests": 2, "requests_per_second": 5 });
    let set = server.http.put(server.url("/v1/tenants/acme/quotas")).json(&quotas).send().await?;
    assert_eq!(set.status(), 200);
    let url = server.url("/fn/acme/hello");
    let before = server.memory()?.rss_bytes;

    // Strangers start bodies and never finish them...
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(drip(server.address(), "/fn/acme/hello", 1000, 1, Duration::ZERO).await?);
    }
    // ...and flood the function, 24 at a time.
    let anonymous = client_with_key(None)?;
    let flood = async {
        let mut statuses = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let batch = join_all((0..24).map(|_| anonymous.get(&url).send())).await;
            for response in batch {
                let response = response?;
                let status = response.status().as_u16();
                let body = response.text().await?;
                if status == 429 {
                    assert!(body.contains("anonymous callers"), "{body}");
                }
                statuses.push(status);
            }
        }
        anyhow::Ok(statuses)
    };
    // Meanwhile the owner calls within its own limits, and is always served.
    let owners_calls = async {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            statuses.push(owner.get(&url).send().await?.status().as_u16());
        }
        anyhow::Ok(statuses)
    };
    let (flood, owners_calls) = tokio::join!(flood, owners_calls);
    let (flood, owners_calls) = (flood?, owners_calls?);
    let during = server.memory()?.rss_bytes;
    assert!(owners_calls.iter().all(|&status| status == 200), "the owner's calls: {owners_calls:?}");
    let served = flood.iter().filter(|&&status| status == 200).count();
    let refused = flood.iter().filter(|&&status| status == 429).count();
    // Refusals, if any, are the anonymous budget's (checked above); the tests below push it past its limits.
    assert!(served > 0 && served + refused == flood.len(), "{served} served, {refused} refused of {}", flood.len());
    assert!(during < before + 48 * MIB, "RSS grew by {} MiB", (during - before) >> 20);
    drop(slow);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_rate_limits_are_their_own() -> anyhow::Result<()> {
    let server = Server::start(&["--anonymous-requests-per-second", "5"]).await?;
    server.deploy_ok("hello", "hello", "public=true").await?;
    let anonymous = client_with_key(None)?;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(anonymous.get(server.url("/fn/default/hello")).send().await?.status().as_u16());
    }
    let served = statuses.iter().filter(|&&status| status == 200).count();
    assert!((5..=7).contains(&served), "{served} of 12 anonymous calls served at 5 per second: {statuses:?}");
    // The owner's key is not held back by strangers' rate.
    for _ in 0..12 {
        assert_eq!(server.get_fn("hello", "").await?.status(), 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_functions_anonymous_share_defaults_to_half_its_concurrency() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    // Two instances: anonymous callers may hold one, so the owner always has the other.
    server.deploy_ok("sleepy", "fixture-sleep", "public=true&max_concurrency=2").await?;
    let anonymous = client_with_key(None)?;
    let url = server.url("/fn/default/sleepy?ms=1500");
    let held = tokio::spawn({
        let (anonymous, url) = (anonymous.clone(), url.clone());
        async move { anonymous.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = anonymous.get(&url).send().await?;
    assert_eq!(second.status(), 429, "a second anonymous call past the share");
    let owners = server.http.get(server.url("/fn/default/sleepy?ms=10")).send().await?;
    assert_eq!(owners.status(), 200, "the owner's call takes the other instance");
    assert_eq!(held.await??, 200);
    Ok(())
}
