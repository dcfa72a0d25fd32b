//! The router: one match over method and path segments, then the handler.
//!
//! `/fn/{tenant}/{name}/...` runs functions; `/v1/...` manages them and needs
//! an API key; `/healthz`, `/readyz` and `/metrics` (admin key) serve operators;
//! `/ui` is the dashboard's static files (`server::ui`).
//! [`ROUTES`] lists every route with its methods: a path that matches none is
//! `404`, one that matches for other methods `405` with `Allow`. A test holds
//! it equal to the OpenAPI document (`api::openapi`), served at `/v1/openapi.json`.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body};
use super::error::ApiError;
use super::errors::IntoResponse;
use super::{
    App, alerts_api, calls, datasets_api, functions_api, health, jobs_api, models_api, monitor_api, tenants_api, ui,
    usage_api,
};
use crate::api::{Health, HealthStatus};
use crate::names::FunctionName;
use crate::stats::SeriesKind;

/// A route: a path pattern and the methods it accepts, as `Allow` lists them.
///
/// In a pattern, `{param}` matches one path segment and a last `{rest}`
/// matches one or more, slashes included.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The path pattern, as the OpenAPI document writes it.
    pub path: &'static str,
    /// The methods, comma-separated, as the `Allow` header carries them.
    pub methods: &'static str,
}

/// Every method a function call accepts (and the OpenAPI document can name).
const ANY_METHOD: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Every route the router answers.
pub const ROUTES: &[Route] = &[
    Route { path: "/fn/{tenant}/{name}", methods: ANY_METHOD },
    Route { path: "/fn/{tenant}/{name}/{rest}", methods: ANY_METHOD },
    Route { path: "/healthz", methods: "GET" },
    Route { path: "/readyz", methods: "GET" },
    Route { path: "/metrics", methods: "GET" },
    Route { path: "/v1/openapi.json", methods: "GET" },
    Route { path: "/v1/functions", methods: "GET" },
    Route { path: "/v1/functions/{name}", methods: "GET, PUT, DELETE" },
    Route { path: "/v1/functions/{name}/rollback", methods: "POST" },
    Route { path: "/v1/functions/{name}/invoke", methods: "POST" },
    Route { path: "/v1/functions/{name}/stats", methods: "GET" },
    Route { path: "/v1/functions/{name}/thresholds", methods: "GET, PUT" },
    Route { path: "/v1/models/{name}/stats", methods: "GET" },
    Route { path: "/v1/models/{name}/batching", methods: "PUT" },
    Route { path: "/v1/monitor/thresholds", methods: "GET, PUT" },
    Route { path: "/v1/models", methods: "GET" },
    Route { path: "/v1/datasets", methods: "GET" },
    Route { path: "/v1/datasets/{name}", methods: "GET, PUT, DELETE" },
    Route { path: "/v1/datasets/{name}/rows", methods: "GET" },
    Route { path: "/v1/jobs", methods: "GET, POST" },
    Route { path: "/v1/jobs/{id}", methods: "GET, DELETE" },
    Route { path: "/v1/jobs/{id}/cancel", methods: "POST" },
    Route { path: "/v1/jobs/{id}/events", methods: "GET" },
    Route { path: "/v1/jobs/{id}/logs", methods: "GET" },
    Route { path: "/v1/jobs/{id}/parameters", methods: "GET" },
    Route { path: "/v1/jobs/{id}/report", methods: "GET" },
    Route { path: "/v1/jobs/{id}/report.svg", methods: "GET" },
    Route { path: "/v1/models/{name}", methods: "GET, PUT, DELETE" },
    Route { path: "/v1/tenants", methods: "GET, POST" },
    Route { path: "/v1/tenants/{tenant}/keys", methods: "POST" },
    Route { path: "/v1/tenants/{tenant}/quotas", methods: "GET, PUT" },
    Route { path: "/v1/keys/{id}", methods: "DELETE" },
    Route { path: "/v1/usage", methods: "GET" },
    Route { path: "/v1/usage/records", methods: "GET" },
    Route { path: "/v1/alerts", methods: "GET" },
    Route { path: "/v1/alerts/sinks", methods: "GET" },
    Route { path: "/v1/alerts/sinks/{name}", methods: "PUT, DELETE" },
    Route { path: "/v1/events", methods: "GET" },
];

/// The methods `path` accepts, if it is a route at all.
fn allowed_methods(path: &str) -> Option<&'static str> {
    ROUTES.iter().find(|route| matches_pattern(route.path, path)).map(|route| route.methods)
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.trim_start_matches('/').split('/');
    let mut given = path.trim_start_matches('/').split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some("{rest}"), Some(_)) => return wanted.next().is_none(),
            (Some(want), Some(segment)) if want.starts_with('{') || want == segment => {}
            _ => return false,
        }
    }
}

/// `404` for a path that is no route, `405` for one that is, for other methods.
fn no_route(path: &str) -> ApiError {
    match allowed_methods(path) {
        Some(methods) => ApiError::MethodNotAllowed(methods),
        None => ApiError::NotFound(format!("route `{path}`")),
    }
}

/// The OpenAPI document, serialized once.
static OPENAPI: LazyLock<Option<Bytes>> =
    LazyLock::new(|| serde_json::to_vec(&crate::api::openapi::document()).ok().map(Bytes::from));

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
    let get = request.method() == Method::GET;
    match segments.as_slice() {
        ["fn", tenant, name, ..] => {
            let prefix = 4 + tenant.len() + 1 + name.len();
            let rest = path.get(prefix..).filter(|r| !r.is_empty()).unwrap_or("/");
            calls::call_http_function(app, request, tenant, name, rest, request_id).await
        }
        ["healthz"] if get => Ok(body::json_response(StatusCode::OK, &Health { status: HealthStatus::Ok })),
        ["readyz"] if get => Ok(health::readyz(app, request.headers()).await),
        ["v1", "openapi.json"] if get => openapi(),
        ["metrics"] if get => {
            let principal = app.auth.authenticate(request.headers()).await?;
            if !principal.admin {
                return Err(ApiError::Forbidden(
                    "/metrics needs an admin key; a scraper without one can use the `metrics_listen` address"
                        .to_owned(),
                ));
            }
            Ok(metrics(app))
        }
        ["v1", "openapi.json"] => Err(no_route(&path)),
        // The dashboard: static files, no key (the pages call `/v1` with one).
        ["ui", ..] => ui::serve(request.method(), path.get(3..).unwrap_or_default(), request.headers()),
        ["v1", ..] => api(app, request, &segments[1..], request_id).await,
        _ => Err(no_route(&path)),
    }
}

/// The header with which an admin key acts as another tenant.
pub const ACT_AS_HEADER: &str = "x-muon-tenant";

/// The caller as `/v1` sees it: an admin key that names a tenant in
/// [`ACT_AS_HEADER`] acts as that tenant (the dashboard's tenant picker, an
/// operator's script), keeping its admin rights; any other key acts as its own.
async fn acting_as(
    app: &App,
    principal: crate::auth::Principal,
    headers: &http::HeaderMap,
) -> Result<crate::auth::Principal, ApiError> {
    let Some(value) = headers.get(ACT_AS_HEADER) else {
        return Ok(principal);
    };
    if !principal.admin {
        return Err(ApiError::Forbidden(format!(
            "`{ACT_AS_HEADER}` needs an admin key; a tenant's key always acts as its own tenant, so drop the header"
        )));
    }
    let tenant =
        value.to_str().map_err(|_| ApiError::BadRequest(format!("`{ACT_AS_HEADER}` must be a tenant name")))?;
    // An unknown tenant answers 404 here rather than being acted on.
    tenants_api::visible_tenant(app, &principal, tenant).await?;
    Ok(crate::auth::Principal { tenant: tenant.to_owned(), ..principal })
}

/// `GET /v1/openapi.json`, without a key.
fn openapi() -> Result<http::Response<Body>, ApiError> {
    let document = OPENAPI
        .as_ref()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the OpenAPI document cannot be serialized")))?;
    Ok(body::json_bytes_response(StatusCode::OK, document.clone()))
}

/// `/v1/...`: every route here needs a key (the document is answered above, without one).
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
    let principal = acting_as(app, principal, request.headers()).await?;
    let method = request.method().clone();
    let tenant = principal.tenant.clone();
    match (segments, &method) {
        (["functions"], &Method::GET) => functions_api::list(app, &tenant),
        (["functions", name], _) => {
            let name = FunctionName::parse(name)?;
            match method {
                Method::PUT => functions_api::deploy(app, &tenant, request, &name).await,
                Method::GET => functions_api::show(app, &tenant, &name).await,
                Method::DELETE => functions_api::delete(app, &tenant, &name).await,
                _ => Err(no_route(request.uri().path())),
            }
        }
        (["functions", name, "rollback"], &Method::POST) => {
            functions_api::rollback(app, &tenant, &FunctionName::parse(name)?).await
        }
        (["functions", name, "invoke"], &Method::POST) => {
            calls::call_typed_function(app, &tenant, request, &FunctionName::parse(name)?, request_id).await
        }
        (["functions", name, "stats"], &Method::GET) => {
            let name = FunctionName::parse(name)?;
            monitor_api::stats(app, &tenant, SeriesKind::Function, name.as_str(), request.uri().query())
        }
        (["functions", name, "thresholds"], &Method::GET) => {
            monitor_api::thresholds(app, &tenant, Some(&FunctionName::parse(name)?))
        }
        (["functions", name, "thresholds"], &Method::PUT) => {
            monitor_api::set_thresholds(app, &tenant, Some(&FunctionName::parse(name)?), request).await
        }
        (["models", name, "stats"], &Method::GET) => {
            monitor_api::stats(app, &tenant, SeriesKind::Model, name, request.uri().query())
        }
        (["monitor", "thresholds"], &Method::GET) => monitor_api::thresholds(app, &tenant, None),
        (["monitor", "thresholds"], &Method::PUT) => monitor_api::set_thresholds(app, &tenant, None, request).await,
        (["models", name, "batching"], &Method::PUT) => models_api::set_batching(app, &tenant, request, name).await,
        (["models"], &Method::GET) => Ok(models_api::list(app, &tenant)),
        (["models", name], _) => match method {
            Method::PUT => models_api::upload(app, &tenant, request, name).await,
            Method::GET => models_api::show(app, &tenant, name),
            Method::DELETE => models_api::delete(app, &tenant, name).await,
            _ => Err(no_route(request.uri().path())),
        },
        (["datasets"], &Method::GET) => datasets_api::list(app, &tenant).await,
        (["datasets", name], _) => match method {
            Method::PUT => datasets_api::upload(app, &tenant, request, name, request_id).await,
            Method::GET => datasets_api::show(app, &tenant, name, request.uri().query().unwrap_or_default()).await,
            Method::DELETE => datasets_api::delete(app, &tenant, name).await,
            _ => Err(no_route(request.uri().path())),
        },
        (["datasets", name, "rows"], &Method::GET) => {
            datasets_api::rows(app, &tenant, name, request.uri().query().unwrap_or_default()).await
        }
        (["jobs"], &Method::POST) => jobs_api::submit(app, &tenant, request).await,
        (["jobs"], &Method::GET) => jobs_api::list(app, &tenant).await,
        (["jobs", id], &Method::GET) => jobs_api::show(app, &tenant, id).await,
        (["jobs", id], &Method::DELETE) => jobs_api::delete(app, &tenant, id).await,
        (["jobs", id, "cancel"], &Method::POST) => jobs_api::cancel(app, &tenant, id).await,
        (["jobs", id, "events"], &Method::GET) => jobs_api::events(app, &tenant, id, request.headers()).await,
        (["jobs", id, "logs"], &Method::GET) => jobs_api::logs(app, &tenant, id).await,
        (["jobs", id, "parameters"], &Method::GET) => {
            jobs_api::parameters(app, &tenant, id, request.uri().query().unwrap_or_default()).await
        }
        (["jobs", id, "report"], &Method::GET) => jobs_api::report(app, &tenant, id).await,
        (["jobs", id, "report.svg"], &Method::GET) => jobs_api::report_svg(app, &tenant, id).await,
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
        (["alerts"], &Method::GET) => alerts_api::alerts(app, &tenant, request.uri().query()).await,
        (["alerts", "sinks"], &Method::GET) => alerts_api::sinks(app, &tenant).await,
        (["alerts", "sinks", name], &Method::PUT) => alerts_api::put_sink(app, &tenant, request, name).await,
        (["alerts", "sinks", name], &Method::DELETE) => alerts_api::delete_sink(app, &tenant, name).await,
        (["events"], &Method::GET) => alerts_api::events(app, &tenant, request.uri().query()).await,
        _ => Err(no_route(request.uri().path())),
    }
}

/// A request on a connection accepted after the shutdown signal: the
/// process is alive (`/healthz`), but takes no new work (`503`, `/readyz`
/// too), and the connection closes after the answer.
pub fn handle_while_stopping(app: &App, request: &http::Request<Incoming>) -> http::Response<Body> {
    let mut response = if request.uri().path() == "/healthz" {
        body::json_response(StatusCode::OK, &Health { status: HealthStatus::Ok })
    } else if request.uri().path() == "/readyz" {
        health::readyz_while_stopping(app)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The router's table and the OpenAPI document name the same routes and
    /// methods: a route added to one and not the other fails here.
    #[test]
    fn the_route_table_and_the_openapi_document_agree() {
        let table: BTreeSet<(String, &str)> = ROUTES
            .iter()
            .flat_map(|route| route.methods.split(", ").map(|method| (route.path.to_owned(), method)))
            .collect();
        let document = crate::api::openapi::document();
        let documented: BTreeSet<(String, &str)> = document
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                crate::api::openapi::operations(item).into_iter().map(|(method, _)| (path.clone(), method))
            })
            .collect();
        let undocumented: Vec<_> = table.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&table).collect();
        assert!(undocumented.is_empty(), "routes missing from the OpenAPI document: {undocumented:?}");
        assert!(unrouted.is_empty(), "documented routes the router does not have: {unrouted:?}");
    }

    #[test]
    fn paths_match_the_patterns_of_the_table() {
        let cases = [
            ("/fn/acme/hello", Some(ANY_METHOD)),
            ("/fn/acme/hello/", Some(ANY_METHOD)),
            ("/fn/acme/hello/a/b/c", Some(ANY_METHOD)),
            ("/fn/acme", None),
            ("/healthz", Some("GET")),
            ("/healthz/x", None),
            ("/v1/functions/hello", Some("GET, PUT, DELETE")),
            ("/v1/functions/hello/invoke", Some("POST")),
            ("/v1/functions/hello/invoke/x", None),
            ("/v1/tenants/acme/quotas", Some("GET, PUT")),
            ("/v1/usage/records", Some("GET")),
            ("/v1/usage/totals", None),
            ("/v1", None),
            ("/", None),
        ];
        for (path, methods) in cases {
            assert_eq!(allowed_methods(path), methods, "{path}");
        }
    }
}
