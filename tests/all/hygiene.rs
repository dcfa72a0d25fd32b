//! Hygiene of HTTP (header limits, slow clients, framing, graceful shutdown)
//! and of the code (layers that point down, fixtures that are used).

mod imports;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muon_tests::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn raw_exchange(server: &Server, request: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(server.address()).await?;
    stream.write_all(request).await?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// Checks that a raw answer has a JSON error body with `code`, framed by its
/// Content-Length (hyper's own answers to bad heads get one too).
fn assert_json_error(answer: &str, code: &str) -> anyhow::Result<()> {
    let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no head in {answer:?}"))?;
    assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let json: serde_json::Value = serde_json::from_str(body)?;
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{json}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_get_431() -> anyhow::Result<()> {
    let server = Server::start(&["--max-headers", "20", "--max-header-bytes", "8192"]).await?;
    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for i in 0..40 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let large = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
    let huge_length = "POST /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 18446744073709551615\r\n\r\n";
    for request in [many.as_str(), large.as_str(), huge_length] {
        let answer = raw_exchange(&server, request.as_bytes()).await?;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert_json_error(&answer, "headers_too_large")?;
    }
    let fine = raw_exchange(&server, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    // Public, so the body is read without a key.
    server.deploy_ok("hello", "hello", "public=true").await?;
    let smuggle = b"POST /fn/default/hello HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde";
    let answer = raw_exchange(&server, smuggle).await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_json_error(&answer, "bad_request")?;
    let garbage = raw_exchange(&server, b"NOT HTTP AT ALL\r\n\r\n").await?;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert_json_error(&garbage, "bad_request")?;
    let bad_chunk =
        b"POST /fn/default/hello HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    let answer = raw_exchange(&server, bad_chunk).await?;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_closed_at_the_header_timeout() -> anyhow::Result<()> {
    let server = Server::start(&["--header-read-timeout-ms", "500"]).await?;
    let mut slow = TcpStream::connect(server.address()).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await?;
    let started = Instant::now();
    // Another client is served while the slow one trickles.
    assert_eq!(server.http.get(server.url("/healthz")).send().await?.status(), 200);
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the slow connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() -> anyhow::Result<()> {
    let mut server = Server::start(&["--shutdown-grace-ms", "5000"]).await?;
    server.deploy_ok("slow", "fixture-sleep", "").await?;
    let in_flight = tokio::spawn({
        let request = server.http.get(server.url("/fn/default/slow?ms=1000"));
        async move { anyhow::Ok(request.send().await?.text().await?) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM")?;
    assert_eq!(in_flight.await??, "woke up");
    assert_eq!(server.wait(Duration::from_secs(10)).await?, Some(0));
    let refused = reqwest::Client::new().get(server.url("/healthz")).send().await;
    assert!(refused.is_err(), "a stopped server accepts no connections");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_also_stops_cleanly() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    server.signal("INT")?;
    assert_eq!(server.wait(Duration::from_secs(10)).await?, Some(0));
    Ok(())
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn host_modules_import_only_downwards_and_never_in_a_cycle() -> anyhow::Result<()> {
    let report = imports::check(&repo().join("host/src"))?;
    assert!(report.is_clean(), "host/src breaks its layering (docs/ARCHITECTURE.md):\n{report}");
    Ok(())
}

/// The crates under `REPO/functions` that no test uses: a component must be
/// named (as `"NAME"`) in a test under `REPO/tests/all`; a plain library
/// must be a path dependency of another crate there.
fn unused_fixtures(repo: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    imports::rust_files(&repo.join("tests/all"), &mut files)?;
    let tests = files.iter().map(std::fs::read_to_string).collect::<Result<String, _>>()?;
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(repo.join("functions"))? {
        let dir = entry?.path();
        if let Some(name) = dir.file_name().and_then(|n| n.to_str()).filter(|_| dir.is_dir()) {
            manifests.push((name.to_owned(), std::fs::read_to_string(dir.join("Cargo.toml"))?));
        }
    }
    let mut unused: Vec<String> = manifests
        .iter()
        .filter(|(name, manifest)| {
            if manifest.contains("crate-type = [\"cdylib\"]") {
                !tests.contains(&format!("\"{name}\""))
            } else {
                let dependency = format!("path = \"../{name}\"");
                !manifests.iter().any(|(other, manifest)| other != name && manifest.contains(&dependency))
            }
        })
        .map(|(name, _)| name.clone())
        .collect();
    unused.sort();
    Ok(unused)
}

#[test]
fn every_fixture_under_functions_is_used_by_a_test() -> anyhow::Result<()> {
    let unused = unused_fixtures(&repo())?;
    assert!(unused.is_empty(), "fixtures under functions/ that no test uses (use them, or delete them): {unused:?}");
    Ok(())
}

#[test]
fn unused_components_and_libraries_are_found() -> anyhow::Result<()> {
    let repo = tempfile::tempdir()?;
    let cdylib = "[lib]\ncrate-type = [\"cdylib\"]\n";
    for (name, manifest) in [
        ("comp-used", format!("{cdylib}[dependencies]\nlib-used = {{ path = \"../lib-used\" }}\n")),
        ("comp-unused", cdylib.to_owned()),
        ("lib-used", String::new()),
        ("lib-unused", String::new()),
    ] {
        std::fs::create_dir_all(repo.path().join("functions").join(name))?;
        std::fs::write(repo.path().join("functions").join(name).join("Cargo.toml"), manifest)?;
    }
    std::fs::create_dir_all(repo.path().join("tests/all/nested"))?;
    std::fs::write(repo.path().join("tests/all/nested/a.rs"), "deploy_ok(\"f\", \"comp-used\", \"\")")?;
    assert_eq!(unused_fixtures(repo.path())?, ["comp-unused", "lib-unused"]);
    Ok(())
}
