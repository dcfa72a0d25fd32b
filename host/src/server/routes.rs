//! The router: one match over method and path segments, then the handler.
//!
//! `/fn/{tenant}/{name}/...` runs functions; `/v1/...` manages them;
//! `/healthz`, `/readyz` and `/metrics` serve operators.

use std::time::Instant;

use http::{HeaderValue, Method, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body};
use super::{App, functions_api};
use crate::engine::FunctionKind;
use crate::error::ApiError;
use crate::invoke;
use crate::registry::{DEFAULT_TENANT, FunctionName};

/// Response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-muon-request-id";

/// Answers one request; never fails.
pub async fn handle(app: &App, request: http::Request<Incoming>) -> http::Response<Body> {
    let request_id = app.request_ids.next();
    let has_body = request.headers().contains_key(http::header::TRANSFER_ENCODING)
        || request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0");
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
    let method = request.method().clone();
    match segments.as_slice() {
        ["fn", tenant, name, ..] => {
            let prefix = 4 + tenant.len() + 1 + name.len();
            let rest = path.get(prefix..).filter(|r| !r.is_empty()).unwrap_or("/");
            invoke_http(app, request, tenant, name, rest, request_id).await
        }
        ["healthz"] => Ok(body::json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))),
        ["readyz"] => readyz(app).await,
        ["metrics"] => Ok(metrics(app)),
        ["v1", "functions"] => match method {
            Method::GET => Ok(functions_api::list(app)),
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        ["v1", "functions", name] => {
            let name = FunctionName::parse(name)?;
            match method {
                Method::PUT => functions_api::deploy(app, request, &name).await,
                Method::GET => functions_api::show(app, &name).await,
                Method::DELETE => functions_api::delete(app, &name).await,
                _ => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
            }
        }
        ["v1", "functions", name, "rollback"] => {
            let name = FunctionName::parse(name)?;
            match method {
                Method::POST => functions_api::rollback(app, &name).await,
                _ => Err(ApiError::MethodNotAllowed("POST")),
            }
        }
        ["v1", "functions", name, "invoke"] => {
            let name = FunctionName::parse(name)?;
            match method {
                Method::POST => invoke_typed(app, request, &name, request_id).await,
                _ => Err(ApiError::MethodNotAllowed("POST")),
            }
        }
        _ => Err(ApiError::NotFound(format!("route `{path}`"))),
    }
}

async fn readyz(app: &App) -> Result<http::Response<Body>, ApiError> {
    if !app.is_ready() {
        return Err(ApiError::Unavailable("muon is shutting down".to_owned()));
    }
    if !app.registry.ready().await {
        return Err(ApiError::Unavailable("the catalog database does not answer".to_owned()));
    }
    Ok(body::json_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })))
}

fn metrics(app: &App) -> http::Response<Body> {
    let mut response = http::Response::new(body::full(app.metrics.render()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `ANY /fn/{tenant}/{name}/{*rest}`: a handler or wasi:http function.
async fn invoke_http(
    app: &App,
    request: http::Request<Incoming>,
    tenant: &str,
    name: &str,
    rest: &str,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let not_found = || ApiError::NotFound(format!("function `{tenant}/{name}`"));
    if tenant != DEFAULT_TENANT {
        return Err(not_found());
    }
    let version = app.registry.get(tenant, name).ok_or_else(not_found)?;
    let started = Instant::now();
    let (parts, incoming) = request.into_parts();
    let result = async {
        let body = body::read_limited(&parts.headers, incoming, app.config.max_request_bytes).await?;
        match version.entry.kind() {
            FunctionKind::Handler => {
                invoke::call_handler(app, std::sync::Arc::clone(&version), &parts, rest, body, request_id).await
            }
            FunctionKind::Http => {
                let path_and_query = match parts.uri.query() {
                    Some(query) => format!("{rest}?{query}"),
                    None => rest.to_owned(),
                };
                invoke::call_http(app, std::sync::Arc::clone(&version), parts, &path_and_query, body, request_id)
                    .await
            }
            FunctionKind::Preprocessor | FunctionKind::TrainingStep => Err(ApiError::BadRequest(format!(
                "`{name}` is a {} function; call it with POST /v1/functions/{name}/invoke",
                version.entry.kind().as_str()
            ))),
        }
    }
    .await;
    version.metrics.record(started, result.as_ref().err().map(ApiError::code));
    result
}

/// `POST /v1/functions/{name}/invoke`: a typed function with JSON in and out.
async fn invoke_typed(
    app: &App,
    request: http::Request<Incoming>,
    name: &FunctionName,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let version = app
        .registry
        .get(DEFAULT_TENANT, name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("function `{name}`")))?;
    let started = Instant::now();
    let (parts, incoming) = request.into_parts();
    let result = async {
        let input = body::read_limited(&parts.headers, incoming, app.config.max_request_bytes).await?;
        let output =
            invoke::typed::invoke_typed(app, std::sync::Arc::clone(&version), &input, request_id).await?;
        Ok(body::json_response(StatusCode::OK, &output))
    }
    .await;
    version.metrics.record(started, result.as_ref().err().map(ApiError::code));
    result
}
