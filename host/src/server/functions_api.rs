//! `/v1/functions`: deploy, list, show, delete and roll back functions.

use http::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::App;
use super::body::{self, Body};
use crate::db::VersionRecord;
use crate::error::ApiError;
use crate::names::FunctionName;
use crate::registry::{DeployOptions, Version, parse_allowed_hosts, parse_models};

/// `PUT /v1/functions/{name}` with the component's bytes.
pub async fn deploy(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &FunctionName,
) -> Result<http::Response<Body>, ApiError> {
    let options = deploy_options(request.uri().query().unwrap_or_default())?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.config.max_deploy_bytes).await?;
    let limits = app.registry.limits_for(&options)?;
    let is_new = app.registry.get(tenant, name.as_str()).is_none();
    let quota =
        app.tenancy.check_deploy(tenant, limits.memory_mb, limits.timeout_ms, is_new, bytes.len() as u64).await?;
    let version = app.registry.deploy(tenant, name, bytes, options, quota).await?;
    tracing::info!(function = %version.label, version = version.record.version, kind = %version.record.kind, "deployed");
    Ok(body::json_response(StatusCode::CREATED, &version_json(&version)))
}

/// `GET /v1/functions`.
pub fn list(app: &App, tenant: &str) -> http::Response<Body> {
    let functions: Vec<Value> = app.registry.list(tenant).iter().map(|v| version_json(v)).collect();
    body::json_response(StatusCode::OK, &json!({ "functions": functions }))
}

/// `GET /v1/functions/{name}`: the active version and the history.
pub async fn show(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    let active =
        app.registry.get(tenant, name.as_str()).ok_or_else(|| ApiError::NotFound(format!("function `{name}`")))?;
    let versions: Vec<Value> = app.registry.history(tenant, name).await?.iter().map(record_json).collect();
    let mut out = version_json(&active);
    out["versions"] = Value::Array(versions);
    Ok(body::json_response(StatusCode::OK, &out))
}

/// `DELETE /v1/functions/{name}`.
pub async fn delete(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    app.registry.delete(tenant, name).await?;
    crate::telemetry::forget_function(&format!("{tenant}/{name}"));
    tracing::info!(function = %name, "deleted");
    Ok(body::json_response(StatusCode::OK, &json!({ "deleted": name.as_str() })))
}

/// `POST /v1/functions/{name}/rollback`.
pub async fn rollback(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    let version = app.registry.rollback(tenant, name).await?;
    tracing::info!(function = %version.label, version = version.record.version, "rolled back");
    Ok(body::json_response(StatusCode::OK, &version_json(&version)))
}

fn deploy_options(query: &str) -> Result<DeployOptions, ApiError> {
    let mut options = DeployOptions::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{what} must be a positive whole number, got `{value}`")))
        };
        match key.as_ref() {
            "memory_mb" => options.memory_mb = Some(u32::try_from(number("memory_mb")?).unwrap_or(u32::MAX)),
            "timeout_ms" => options.timeout_ms = Some(number("timeout_ms")?),
            "max_concurrency" => {
                options.max_concurrency = Some(u32::try_from(number("max_concurrency")?).unwrap_or(u32::MAX));
            }
            "public" => {
                options.public = match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(ApiError::BadRequest(format!("public must be true or false, got `{value}`"))),
                };
            }
            "allowed_hosts" => options.allowed_hosts = parse_allowed_hosts(&value)?,
            "models" => options.models = parse_models(&value)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown deploy option `{other}`; use memory_mb, timeout_ms, max_concurrency, public, allowed_hosts, models"
                )));
            }
        }
    }
    Ok(options)
}

fn version_json(version: &Version) -> Value {
    let mut out = record_json(&version.record);
    out["limits"] = json!(version.limits);
    out
}

fn record_json(record: &VersionRecord) -> Value {
    json!({
        "tenant": record.tenant,
        "name": record.name,
        "version": record.version,
        "digest": record.digest,
        "kind": record.kind,
        "size_bytes": record.size_bytes,
        "public": record.public,
        "allowed_hosts": record.allowed_hosts.split(',').filter(|h| !h.is_empty()).collect::<Vec<_>>(),
        "models": record.models.as_ref().map(|names| names.split(',').filter(|n| !n.is_empty()).collect::<Vec<_>>()),
        "created_at_ms": record.created_at_ms,
        "limits": {
            "memory_mb": record.memory_mb,
            "timeout_ms": record.timeout_ms,
            "max_concurrency": record.max_concurrency,
        },
    })
}
