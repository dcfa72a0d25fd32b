//! `/v1/models`: upload, list, show and delete a tenant's models.

use http::StatusCode;
use hyper::body::Incoming;
use serde_json::json;

use super::App;
use super::body::{self, Body};
use crate::error::ApiError;
use crate::names::check_model_name;
use crate::nn::ModelOptions;
use crate::nn::backend::{BackendKind, Device};

/// `PUT /v1/models/{name}` with the model's bytes.
pub async fn upload(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    check_model_name(name)?;
    let options = model_options(request.uri().query().unwrap_or_default())?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.models.inference().config().max_model_bytes).await?;
    app.tenancy.check_model_upload(tenant, bytes.len() as u64).await?;
    let record = app.models.put(tenant, name, bytes, options).await?;
    tracing::info!(tenant, model = name, digest = %record.digest, backend = record.backend.as_str(), "model stored");
    Ok(body::json_response(StatusCode::CREATED, &json!(record)))
}

/// `GET /v1/models`.
pub fn list(app: &App, tenant: &str) -> http::Response<Body> {
    body::json_response(StatusCode::OK, &json!({ "models": app.models.list(tenant) }))
}

/// `GET /v1/models/{name}`.
pub fn show(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    let record = app.models.get(tenant, name).ok_or_else(|| ApiError::NotFound(format!("model `{name}`")))?;
    Ok(body::json_response(StatusCode::OK, &json!(record)))
}

/// `DELETE /v1/models/{name}`.
pub async fn delete(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    app.models.delete(tenant, name).await?;
    tracing::info!(tenant, model = name, "model deleted");
    Ok(body::json_response(StatusCode::OK, &json!({ "deleted": name })))
}

fn model_options(query: &str) -> Result<ModelOptions, ApiError> {
    let mut options = ModelOptions::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "encoding" => options.encoding = Some(value.into_owned()),
            "backend" => {
                options.backend = Some(BackendKind::parse(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!("unknown backend `{value}`; use tract or onnxruntime"))
                })?);
            }
            "target" => {
                options.target = Some(
                    Device::parse(&value)
                        .ok_or_else(|| ApiError::BadRequest(format!("unknown target `{value}`; use cpu or gpu")))?,
                );
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown model option `{other}`; use encoding, backend, target"
                )));
            }
        }
    }
    Ok(options)
}
