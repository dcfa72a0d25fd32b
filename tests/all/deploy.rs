//! Deploying, listing, redeploying, rolling back and deleting functions.

use muon_tests::{Server, component, error_of};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn deploy_answers_201_with_the_version_and_limits() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let out = server.deploy_ok("hello", "hello", "memory_mb=64&timeout_ms=2000&max_concurrency=8&public=true").await?;
    assert_eq!(out["name"], "hello");
    assert_eq!(out["version"], 1);
    assert_eq!(out["kind"], "handler");
    assert_eq!(out["digest"].as_str().map(str::len), Some(64));
    assert_eq!(out["limits"]["memory_mb"], 64);
    assert_eq!(out["limits"]["timeout_ms"], 2000);
    assert_eq!(out["limits"]["max_concurrency"], 8);
    assert_eq!(out["public"], true);
    let defaults = server.deploy_ok("hello2", "hello", "").await?;
    assert_eq!(defaults["limits"]["memory_mb"], 128);
    assert_eq!(defaults["limits"]["timeout_ms"], 30000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_function_kind_is_detected() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    for (component_name, kind) in [
        ("hello", "handler"),
        ("http-hello", "http"),
        ("preprocess-csv", "preprocessor"),
        ("train-linear", "training-step"),
    ] {
        let out = server.deploy_ok(component_name, component_name, "").await?;
        assert_eq!(out["kind"], kind, "{component_name}");
    }
    let list: Value = server.http.get(server.url("/v1/functions")).send().await?.json().await?;
    let names: Vec<&str> =
        list["functions"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["hello", "http-hello", "preprocess-csv", "train-linear"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redeploy_rollback_and_delete() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("greeter", "hello", "").await?;
    let second = server.deploy_ok("greeter", "json-transform", "").await?;
    assert_eq!(second["version"], 2);
    let body = server.get_fn("greeter", "").await?.text().await?;
    assert!(body.contains("expected"), "version 2 (json-transform) answers: {body}");

    let shown: Value = server.http.get(server.url("/v1/functions/greeter")).send().await?.json().await?;
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["versions"].as_array().map(Vec::len), Some(2));

    let back: Value = server.http.post(server.url("/v1/functions/greeter/rollback")).send().await?.json().await?;
    assert_eq!(back["version"], 1);
    assert_eq!(server.get_fn("greeter", "").await?.text().await?, "hello, world!\n");

    let (status, code, message) =
        error_of(server.http.post(server.url("/v1/functions/greeter/rollback")).send().await?).await?;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(message.contains("no version before 1"), "{message}");

    let third = server.deploy_ok("greeter", "hello", "").await?;
    assert_eq!(third["version"], 3, "versions keep counting after a rollback");

    let deleted = server.http.delete(server.url("/v1/functions/greeter")).send().await?;
    assert_eq!(deleted.status(), 200);
    let (status, code, _) = error_of(server.get_fn("greeter", "").await?).await?;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, _, _) = error_of(server.http.delete(server.url("/v1/functions/greeter")).send().await?).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_validated() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let long = "a".repeat(64);
    for bad in ["Hello", "-dash", "under_score", long.as_str(), "dots.here"] {
        let response = server.deploy(bad, "hello", "").await?;
        let (status, code, message) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{bad}");
        assert!(message.contains("lowercase"), "{message}");
    }
    server.deploy_ok(&"a".repeat(63), "hello", "").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_with_invalid_component() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let hello = component("hello")?;
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("text", b"this is not wasm".to_vec(), "not WebAssembly"),
        ("core", core_module, "core WebAssembly module"),
        ("truncated", hello[..hello.len() / 2].to_vec(), "does not validate"),
        ("empty", Vec::new(), "not WebAssembly"),
    ];
    for (name, bytes, expected) in cases {
        let response = server.http.put(server.url(&format!("/v1/functions/{name}"))).body(bytes).send().await?;
        let (status, code, message) = error_of(response).await?;
        assert_eq!((status, code.as_str()), (400, "invalid_component"), "{name}");
        assert!(message.contains(expected), "{name}: {message}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn precompiled_native_code_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("hello", "hello", "").await?;
    let compiled = std::fs::read_dir(server.data_dir.join("compiled"))?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .map(|e| e.path());
    let Some(compiled) = compiled else { anyhow::bail!("no compiled artifact in the data directory") };
    let response = server.http.put(server.url("/v1/functions/native")).body(std::fs::read(compiled)?).send().await?;
    let (status, code, message) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (400, "invalid_component"));
    assert!(message.contains("precompiled"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_imports_are_named_at_deploy() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (status, code, message) = error_of(server.deploy("missing", "fixture-unknown-import", "").await?).await?;
    assert_eq!((status, code.as_str()), (400, "unknown_import"));
    assert!(message.contains("muon:missing/thing"), "{message}");
    let (status, _, _) = error_of(server.get_fn("missing", "").await?).await?;
    assert_eq!(status, 404, "a refused deploy leaves nothing behind");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_options_are_checked_against_the_caps() -> anyhow::Result<()> {
    let server = Server::start(&["--max-memory-mb", "256"]).await?;
    for query in [
        "memory_mb=512",
        "memory_mb=0",
        "timeout_ms=999999999",
        "max_concurrency=0",
        "public=maybe",
        "colour=blue",
        "memory_mb=lots",
    ] {
        let (status, code, _) = error_of(server.deploy("hello", "hello", query).await?).await?;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{query}");
    }
    server.deploy_ok("hello", "hello", "memory_mb=256").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_deploys_get_413_before_buffering() -> anyhow::Result<()> {
    let server = Server::start(&["--max-deploy-bytes", "10000"]).await?;
    let (status, code, _) = error_of(server.deploy("hello", "hello", "").await?).await?;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    // Chunked, no Content-Length: cut off as it passes the limit.
    let chunks = futures_chunks(component("hello")?);
    let response =
        server.http.put(server.url("/v1/functions/hello")).body(reqwest::Body::wrap_stream(chunks)).send().await?;
    let (status, code, _) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    Ok(())
}

fn futures_chunks(bytes: Vec<u8>) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::iter(bytes.chunks(4096).map(|c| Ok(c.to_vec())).collect::<Vec<_>>())
}
