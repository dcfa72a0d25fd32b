//! The router: one match over method and path segments, then the handler.
//!
//! `/fn/{tenant}/{name}/...` runs functions; `/v1/...` manages them and needs
//! an API key; `/healthz`, `/readyz` and `/metrics` (admin key) serve operators.

use http::{HeaderValue, Method, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body};
use super::errors::IntoResponse;
use super::{App, calls, functions_api, models_api, tenants_api, usage_api};
use crate::error::ApiError;
use crate::names::FunctionName;

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-muon-request-id";

/// Answers one request; never fails.
pub async fn handle(app: &App, request: http::Request<Incoming>) -> http::Response<Body> {
    let request_id = app.request_ids.next();
    let has_body = request.headers().contains_key(http::header::TRANSFER_ENCODING)
        || request.headers().get(http::header::CONTENT_LENGTH).is_some_and(|len| len.as_bytes() != b"0");
    let mut response = match route(app, request, &request_id).await {
        Ok(response) => response,
        Err(err) => {
            let mut response = err.into_response();
            // The body may be unread; a client must not reuse this connection.
            if has_body {
                response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn route(
    app: &App,
    request: http::Request<Incoming>,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["fn", tenant, name, ..] => {
            let prefix = 4 + tenant.len() + 1 + name.len();
            let rest = path.get(prefix..).filter(|r| !r.is_empty()).unwrap_or("/");
            calls::call_http_function(app, request, tenant, name, rest, request_id).await
        }
        ["healthz"] => Ok(body::json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        ["readyz"] => readyz(app).await,
        ["metrics"] => {
            let principal = app.auth.authenticate(request.headers()).await?;
            if !principal.admin {
                return Err(ApiError::Forbidden(
                    "/metrics needs an admin key; a scraper without one can use the `metrics_listen` address"
                        .to_owned(),
                ));
            }
            Ok(metrics(app))
        }
        ["v1", ..] => api(app, request, &segments[1..], request_id).await,
        _ => Err(ApiError::NotFound(format!("route `{path}`"))),
    }
}

/// `/v1/...`: every route needs a key.
async fn api(
    app: &App,
    request: http::Request<Incoming>,
    segments: &[&str],
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let principal = app.auth.authenticate(request.headers()).await?;
    // Typed invocations are function calls, admitted by the call path's limits.
    if !principal.admin && !matches!(segments, ["functions", _, "invoke"]) {
        app.tenancy.admit_api(&principal.tenant).await?;
    }
    let method = request.method().clone();
    let tenant = principal.tenant.clone();
    match (segments, &method) {
        (["functions"], &Method::GET) => Ok(functions_api::list(app, &tenant)),
        (["functions", name], _) => {
            let name = FunctionName::parse(name)?;
            match method {
                Method::PUT => functions_api::deploy(app, &tenant, request, &name).await,
                Method::GET => functions_api::show(app, &tenant, &name).await,
                Method::DELETE => functions_api::delete(app, &tenant, &name).await,
                _ => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
            }
        }
        (["functions", name, "rollback"], &Method::POST) => {
            functions_api::rollback(app, &tenant, &FunctionName::parse(name)?).await
        }
        (["functions", name, "invoke"], &Method::POST) => {
            calls::call_typed_function(app, &tenant, request, &FunctionName::parse(name)?, request_id).await
        }
        (["models"], &Method::GET) => Ok(models_api::list(app, &tenant)),
        (["models", name], _) => match method {
            Method::PUT => models_api::upload(app, &tenant, request, name).await,
            Method::GET => models_api::show(app, &tenant, name),
            Method::DELETE => models_api::delete(app, &tenant, name).await,
            _ => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
        },
        (["tenants"], &Method::POST) => tenants_api::create(app, &principal, request).await,
        (["tenants"], &Method::GET) => tenants_api::list(app, &principal).await,
        (["tenants", tenant, "keys"], &Method::POST) => tenants_api::issue_key(app, &principal, tenant, request).await,
        (["tenants", tenant, "quotas"], &Method::PUT) => {
            tenants_api::set_quotas(app, &principal, tenant, request).await
        }
        (["tenants", tenant, "quotas"], &Method::GET) => tenants_api::quotas(app, &principal, tenant).await,
        (["keys", id], &Method::DELETE) => tenants_api::revoke_key(app, &principal, id).await,
        (["usage"], &Method::GET) => usage_api::totals(app, &principal, request.uri().query()).await,
        (["usage", "records"], &Method::GET) => usage_api::records(app, &principal, request.uri().query()).await,
        _ => match allowed_methods(segments) {
            Some(methods) => Err(ApiError::MethodNotAllowed(methods)),
            None => Err(ApiError::NotFound(format!("route `/v1/{}`", segments.join("/")))),
        },
    }
}

/// The methods `/v1/{segments}` accepts, if the path exists at all: a path
/// that exists for another method is `405`, anything else `404`.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["functions" | "models"] | ["usage"] | ["usage", "records"] => Some("GET"),
        ["functions" | "models", _] => Some("GET, PUT, DELETE"),
        ["functions", _, "rollback" | "invoke"] | ["tenants", _, "keys"] => Some("POST"),
        ["tenants"] => Some("GET, POST"),
        ["tenants", _, "quotas"] => Some("GET, PUT"),
        ["keys", _] => Some("DELETE"),
        _ => None,
    }
}

async fn readyz(app: &App) -> Result<http::Response<Body>, ApiError> {
    if !app.is_ready() {
        return Err(ApiError::Unavailable("muon is shutting down".to_owned()));
    }
    if !app.registry.ready().await {
        return Err(ApiError::Unavailable("the database does not answer".to_owned()));
    }
    Ok(body::json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })))
}

/// A request on a connection accepted after the shutdown signal: the
/// process is alive (`/healthz`), but takes no new work (`503`, `/readyz`
/// too), and the connection closes after the answer.
pub fn handle_while_stopping(app: &App, request: &http::Request<Incoming>) -> http::Response<Body> {
    let mut response = if request.uri().path() == "/healthz" {
        body::json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
    } else {
        ApiError::Unavailable("muon is shutting down; send the request to another node".to_owned()).into_response()
    };
    response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(value) = HeaderValue::from_str(&app.request_ids.next()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The `metrics_listen` address: `GET /metrics` without a key, nothing else.
pub fn scrape(app: &App, request: &http::Request<Incoming>) -> http::Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => metrics(app),
        (_, "/metrics") => ApiError::MethodNotAllowed("GET").into_response(),
        (_, path) => {
            ApiError::NotFound(format!("route `{path}`; this address serves only GET /metrics")).into_response()
        }
    }
}

fn metrics(app: &App) -> http::Response<Body> {
    let mut response = http::Response::new(body::full(app.metrics.render()));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}
