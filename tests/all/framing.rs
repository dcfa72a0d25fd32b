//! The host owns response framing: a guest cannot forge the answer to the
//! next request on a keep-alive connection, which may be another tenant's
//! (issue 9, item 1), in either the handler world or `wasi:http`.

use std::time::Duration;

use muon_tests::Server;
use serde_json::json;

use crate::wire::{Conn, RawResponse};

/// The text bystander `hello` answers with.
const HELLO: &str = "hello, world!\n";
/// A whole HTTP response, smuggled as a body.
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nforged!";

/// A server with two public forgers in tenant `default` and another tenant's
/// public `hello`, the bystander whose answers must stay its own.
async fn forgers_and_bystander() -> anyhow::Result<Server> {
    let server = Server::start(&[]).await?;
    server.deploy_ok("forge", "fixture-forge", "public=true").await?;
    server.deploy_ok("forge-http", "fixture-forge-http", "public=true").await?;
    let key = server.create_tenant("acme").await?;
    let acme = server.with_key(&key)?;
    let url = server.url("/v1/functions/hello?public=true");
    let wasm = muon_tests::component("hello")?;
    let deployed = acme.put(url).header("content-type", "application/wasm").body(wasm).send().await?;
    anyhow::ensure!(deployed.status() == 201, "deploy of acme/hello: {}", deployed.status());
    Ok(server)
}

/// Asks `forger` for a response, then asks the bystander on the same
/// connection; returns the forged answer after checking the bystander's.
async fn forge_then_bystander(
    server: &Server,
    conn: &mut Conn,
    forger: &str,
    forged: serde_json::Value,
) -> anyhow::Result<RawResponse> {
    let body = forged.to_string();
    let first = conn.request("POST", &format!("/fn/default/{forger}"), "", body.as_bytes()).await?;
    if first.all("connection") == ["close"] {
        // Errors answering a request with a body close the connection; nothing may follow them.
        assert!(first.status >= 400, "{forger} {forged}: a guest closed the connection");
        let rest = conn.rest_until_close(Duration::from_secs(5)).await;
        assert_eq!(rest, Some(Vec::new()), "{forger} {forged}: bytes after the answer, or no close");
        *conn = Conn::open(server).await?;
    }
    let second = conn.request("GET", "/fn/acme/hello", "", b"").await?;
    assert_eq!((second.status, second.text().as_str()), (200, HELLO), "{forger} {forged}: the next answer was forged");
    Ok(first)
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_framing_headers_never_reach_the_wire() -> anyhow::Result<()> {
    let server = forgers_and_bystander().await?;
    let framing_headers: &[&[(&str, &str)]] = &[
        &[("content-length", "0")],
        &[("content-length", "3")],
        &[("content-length", "100000")],
        &[("content-length", "abc")],
        &[("content-length", "3"), ("content-length", "4")],
        &[("transfer-encoding", "chunked")],
        &[("transfer-encoding", "gzip, chunked"), ("content-length", "0")],
        &[("connection", "close")],
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        &[("keep-alive", "timeout=1"), ("te", "trailers"), ("trailer", "x-sum"), ("proxy-authenticate", "Basic")],
    ];
    for forger in ["forge", "forge-http"] {
        // One connection for the whole series: any desync shows in a later answer too.
        let mut conn = Conn::open(&server).await?;
        for headers in framing_headers {
            let forged = json!({ "status": 200, "headers": headers, "body": SMUGGLED });
            let first = forge_then_bystander(&server, &mut conn, forger, forged).await?;
            if first.status == 200 {
                assert_eq!(first.text(), SMUGGLED, "{forger} {headers:?}: the body is sent whole, as data");
            } else {
                // wasi:http itself refuses a body longer than the length the guest declared.
                assert_eq!(
                    (forger, first.status, first.error_code().as_str()),
                    ("forge-http", 500, "trap"),
                    "{headers:?}"
                );
            }
            for (name, _) in *headers {
                if *name != "content-length" {
                    assert!(first.all(name).is_empty(), "{forger}: {name} reached the wire: {:?}", first.headers);
                }
            }
            assert_eq!(first.all("content-length"), [first.body.len().to_string().as_str()], "{forger} {headers:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_that_are_not_final_become_500() -> anyhow::Result<()> {
    let server = forgers_and_bystander().await?;
    for forger in ["forge", "forge-http"] {
        let mut conn = Conn::open(&server).await?;
        for status in [100, 101, 103, 199, 600, 999] {
            let forged = json!({ "status": status, "headers": [["upgrade", "websocket"]], "body": SMUGGLED });
            let first = forge_then_bystander(&server, &mut conn, forger, forged).await?;
            assert_eq!((first.status, first.error_code().as_str()), (500, "invalid_response"), "{forger} {status}");
            assert!(first.text().contains(&status.to_string()), "the error names the status: {}", first.text());
        }
        // Statuses without a body get none, whatever the guest returned.
        for status in [204, 304] {
            let forged = json!({ "status": status, "body": SMUGGLED });
            let first = forge_then_bystander(&server, &mut conn, forger, forged).await?;
            assert_eq!((first.status, first.body.len()), (status, 0), "{forger}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn muon_headers_cannot_be_spoofed() -> anyhow::Result<()> {
    let server = forgers_and_bystander().await?;
    for forger in ["forge", "forge-http"] {
        let mut conn = Conn::open(&server).await?;
        let headers = [["x-muon-request-id", "forged"], ["X-Muon-Tenant", "acme"], ["x-guest", "kept"]];
        let first = forge_then_bystander(
            &server,
            &mut conn,
            forger,
            json!({ "status": 200, "headers": headers, "body": "ok" }),
        )
        .await?;
        let ids = first.all("x-muon-request-id");
        assert!(ids.len() == 1 && ids[0] != "forged", "{forger}: request ids {ids:?}");
        assert!(first.all("x-muon-tenant").is_empty(), "{forger}: {:?}", first.headers);
        assert_eq!(first.all("x-guest"), ["kept"], "{forger}: the guest's own headers stay");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_guest_headers_become_500_naming_them() -> anyhow::Result<()> {
    let server = forgers_and_bystander().await?;
    let mut conn = Conn::open(&server).await?;
    let cases = [("bad name", "v", "bad name"), ("x-split", "a\r\nx-injected: 1", "x-split"), ("", "v", "``")];
    for (name, value, named) in cases {
        let forged = json!({ "status": 200, "headers": [[name, value]], "body": SMUGGLED });
        let first = forge_then_bystander(&server, &mut conn, "forge", forged).await?;
        assert_eq!((first.status, first.error_code().as_str()), (500, "invalid_response"), "{name:?}");
        assert!(first.text().contains(named), "the error names the header: {}", first.text());
        assert!(first.all("x-injected").is_empty());
    }
    Ok(())
}
