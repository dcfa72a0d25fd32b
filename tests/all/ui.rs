//! The dashboard's files at `/ui` (issue 14): served without a key, under a
//! strict Content-Security-Policy, revalidated by `ETag`, gzipped where
//! accepted, every file a page asks for present, and nothing fetched from
//! another host. The pages themselves are tested in a real browser
//! (`tests/browser`, run by `scripts/browser-test.sh`).

use std::collections::BTreeSet;

use muon_tests::{Server, client_with_key, error_of, repo_file};

/// `/ui/...` paths that `text` (HTML or a JavaScript module at `/ui/{at}`)
/// loads: quoted absolute `/ui/` paths, and quoted relative module paths.
fn references(at: &str, text: &str) -> Vec<String> {
    let dir = at.rsplit_once('/').map_or("", |(dir, _)| dir);
    let parent = dir.rsplit_once('/').map_or("", |(parent, _)| parent);
    let mut found = Vec::new();
    for quote in ['"', '\''] {
        for (prefix, base) in [("/ui/", ""), ("./", dir), ("../", parent)] {
            let opening = format!("{quote}{prefix}");
            for (at, _) in text.match_indices(&opening) {
                let rest = &text[at + opening.len()..];
                let Some(end) = rest.find(quote) else { continue };
                let path = &rest[..end];
                if !prefix.starts_with('/') && !path.ends_with(".js") {
                    continue;
                }
                found.push(if base.is_empty() { path.to_owned() } else { format!("{base}/{path}") });
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_served_whole_without_a_key() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let anonymous = client_with_key(None)?;
    let page = anonymous.get(server.url("/ui")).send().await?;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let policy = headers["content-security-policy"].to_str()?;
    for directive in ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Unchanged files are answered 304, gzipped ones have their own tag.
    let etag = headers["etag"].to_str()?.to_owned();
    let again = anonymous.get(server.url("/ui/")).header("if-none-match", &etag).send().await?;
    assert_eq!(again.status(), 304);
    let zipped = anonymous.get(server.url("/ui/js/app.js")).header("accept-encoding", "gzip").send().await?;
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "accept-encoding");
    assert_eq!(zipped.headers()["content-type"], "text/javascript; charset=utf-8");
    let plain = anonymous.get(server.url("/ui/js/app.js")).send().await?;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_ne!(zipped.headers()["etag"], plain.headers()["etag"]);

    // Every file the page and its modules load is there, and none is elsewhere.
    let mut seen = BTreeSet::new();
    let mut queue = vec!["index.html".to_owned()];
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let response = anonymous.get(server.url(&format!("/ui/{path}"))).send().await?;
        assert_eq!(response.status(), 200, "/ui/{path}");
        if path.ends_with(".html") || (path.ends_with(".js") && !path.starts_with("vendor/")) {
            let text = response.text().await?;
            for pattern in ["src=\"http", "href=\"http", "fetch('http", "url(http", "import 'http"] {
                assert!(!text.contains(pattern), "/ui/{path} loads from another host ({pattern})");
            }
            queue.extend(references(&path, &text));
        }
    }
    for page in ["overview", "functions", "models", "datasets", "jobs", "usage", "alerts"] {
        assert!(seen.contains(&format!("js/pages/{page}.js")), "js/pages/{page}.js is not loaded: {seen:?}");
    }
    assert!(seen.contains("vendor/uplot/uPlot.iife.min.js"), "{seen:?}");
    let license = repo_file("host/ui/vendor/uplot/LICENSE")?;
    assert!(String::from_utf8(license)?.contains("MIT"));

    let (status, code, _) = error_of(anonymous.get(server.url("/ui/no-such.js")).send().await?).await?;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let response = anonymous.post(server.url("/ui")).send().await?;
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let (status, code, _) = error_of(response).await?;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
    Ok(())
}
