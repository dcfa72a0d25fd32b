//! `GET /ui` and `/ui/...`: the dashboard, a static client of `/v1`.
//!
//! Its files (`host/ui`: HTML, JavaScript modules, CSS and the vendored
//! uPlot) are embedded in the binary when it is built, so serving it needs
//! nothing on disk and building it needs no Node toolchain. The files need no
//! key; every figure the pages show comes from the JSON API, which the page
//! calls with the key the user pasted as a bearer token (kept in the tab's
//! `sessionStorage`: no cookies, so no CSRF).
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and
//! connections only from this origin, no inline script, nothing framed. Files
//! are revalidated on each load (`no-cache` with a strong `ETag`, answered
//! `304` when unchanged), so a new muon never serves yesterday's code from a
//! browser's cache; compressible files go gzipped when the browser accepts it,
//! compressed once per process.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rust_embed::RustEmbed;

use super::body::{self, Body};
use super::error::ApiError;

/// The dashboard's files, from `host/ui` at build time.
#[derive(RustEmbed)]
#[folder = "ui/"]
struct Files;

/// What every dashboard answer allows the page to do: load and connect to
/// this origin only, run no inline script, be framed by no one.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Files smaller than this go uncompressed: gzip's header would eat the gain.
const MIN_GZIP_BYTES: usize = 512;

/// One file, ready to serve.
struct Asset {
    bytes: Bytes,
    /// Its gzip encoding, when that is smaller.
    gzipped: Option<Bytes>,
    /// The SHA-256 of `bytes` (computed when muon was built), in hex: the `ETag`.
    digest: String,
    content_type: &'static str,
}

/// Every file, by path under `/ui/`, prepared on the first request.
static ASSETS: LazyLock<HashMap<String, Asset>> = LazyLock::new(|| {
    Files::iter()
        .filter_map(|path| {
            let file = Files::get(&path)?;
            let bytes = Bytes::from(file.data.into_owned());
            let content_type = content_type(&path);
            let gzipped = compressible(content_type).then(|| gzip(&bytes)).flatten();
            let digest = hex::encode(file.metadata.sha256_hash());
            Some((path.into_owned(), Asset { bytes, gzipped, digest, content_type }))
        })
        .collect()
});

/// `GET` or `HEAD` of `/ui`, `/ui/` or `/ui/{path}`; `rest` is what follows `/ui`.
pub fn serve(method: &Method, rest: &str, headers: &HeaderMap) -> Result<http::Response<Body>, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed("GET, HEAD"));
    }
    let path = match rest.trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    let asset = ASSETS.get(path).ok_or_else(|| ApiError::NotFound(format!("dashboard file `/ui/{path}`")))?;
    let gzip = asset.gzipped.as_ref().filter(|_| accepts_gzip(headers));
    let etag = format!("\"{}{}\"", asset.digest, if gzip.is_some() { "-gz" } else { "" });
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if unchanged {
        let mut response = http::Response::new(body::full(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = http::Response::new(body::full(gzip.unwrap_or(&asset.bytes).clone()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        if gzip.is_some() {
            response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    };
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if asset.gzipped.is_some() {
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// The media type of a dashboard file, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type == "image/svg+xml" || content_type == "application/json"
}

/// `bytes` gzipped, when that makes them smaller.
fn gzip(bytes: &[u8]) -> Option<Bytes> {
    if bytes.len() < MIN_GZIP_BYTES {
        return None;
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::best());
    encoder.write_all(bytes).ok()?;
    let gzipped = encoder.finish().ok()?;
    (gzipped.len() < bytes.len()).then(|| Bytes::from(gzipped))
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused =
                parts.any(|param| param.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")));
        headers
    }

    #[test]
    fn gzip_is_sent_only_where_accepted() {
        assert!(accepts_gzip(&accept("gzip, deflate, br")));
        assert!(accepts_gzip(&accept("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&accept("*")));
        assert!(!accepts_gzip(&accept("gzip;q=0")));
        assert!(!accepts_gzip(&accept("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn every_file_has_a_type_and_the_page_its_scripts() {
        let index = ASSETS.get("index.html").map(|asset| String::from_utf8_lossy(&asset.bytes).into_owned());
        let index = index.unwrap_or_default();
        assert!(index.contains("/ui/js/app.js"), "index.html loads the app");
        for (path, asset) in ASSETS.iter() {
            if path.ends_with(".js") || path.ends_with(".css") {
                assert_ne!(asset.content_type, "text/plain; charset=utf-8", "{path}");
            }
        }
    }
}
