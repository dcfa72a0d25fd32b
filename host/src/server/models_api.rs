//! `/v1/models`: upload, list, show and delete a tenant's models.

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{self, BatchSettings, Deleted, Model, ModelList, ModelQuery};
use crate::names::check_model_name;
use crate::nn::backend::{BackendKind, Device};
use crate::nn::{
    BatchCounts, Batching, DEFAULT_BATCH_WAIT_US, Dim, ElementType, ModelOptions, ModelRecord, TensorSpec,
};
use http::StatusCode;
use hyper::body::Incoming;

/// `PUT /v1/models/{name}` with the model's bytes.
pub async fn upload(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    check_model_name(name)?;
    let options = model_options(model_query(request.uri().query().unwrap_or_default())?)?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.models.inference().config().max_model_bytes).await?;
    let quota = app.tenancy.check_upload(tenant, bytes.len() as u64).await?;
    let record = app.models.put(tenant, name, bytes, options, quota).await?;
    tracing::info!(tenant, model = name, digest = %record.digest, backend = record.backend.as_str(), "model stored");
    Ok(body::json_response(StatusCode::CREATED, &model_of(app, &record)))
}

/// `PUT /v1/models/{name}/batching` with [`BatchSettings`]: the model's
/// next version, the same bytes batched so.
pub async fn set_batching(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &str,
) -> Result<http::Response<Body>, ApiError> {
    let settings: BatchSettings = super::tenants_api::read_json(app, request).await?;
    let batching = batching(Some(settings.batch_max), settings.batch_wait_us)?;
    let size = app.models.get(tenant, name).ok_or_else(|| ApiError::NotFound(format!("model `{name}`")))?.size;
    let quota = app.tenancy.check_upload(tenant, size).await?;
    let record = app.models.set_batching(tenant, name, batching, quota).await?;
    tracing::info!(
        tenant,
        model = name,
        batch_max = batching.max_rows,
        batch_wait_us = batching.wait_us,
        "model batching set"
    );
    Ok(body::json_response(StatusCode::OK, &model_of(app, &record)))
}

/// `GET /v1/models`.
pub fn list(app: &App, tenant: &str) -> http::Response<Body> {
    let models = app.models.list(tenant).iter().map(|record| model_of(app, record)).collect();
    body::json_response(StatusCode::OK, &ModelList { models })
}

/// `GET /v1/models/{name}`.
pub fn show(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    let record = app.models.get(tenant, name).ok_or_else(|| ApiError::NotFound(format!("model `{name}`")))?;
    Ok(body::json_response(StatusCode::OK, &model_of(app, &record)))
}

/// `DELETE /v1/models/{name}`.
pub async fn delete(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    app.models.delete(tenant, name).await?;
    tracing::info!(tenant, model = name, "model deleted");
    Ok(body::json_response(StatusCode::OK, &Deleted { deleted: name.to_owned() }))
}

/// The query of an upload, parsed strictly: an unknown option or a bad value is `400`.
fn model_query(query: &str) -> Result<ModelQuery, ApiError> {
    let mut options = ModelQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "encoding" => options.encoding = Some(value.into_owned()),
            "backend" => {
                let backend = BackendKind::parse(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!("unknown backend `{value}`; use tract or onnxruntime"))
                })?;
                options.backend = Some(backend_of(backend));
            }
            "target" => {
                let target = Device::parse(&value)
                    .ok_or_else(|| ApiError::BadRequest(format!("unknown target `{value}`; use cpu or gpu")))?;
                options.target = Some(target_of(target));
            }
            "batch_max" => options.batch_max = Some(number(&key, &value)?),
            "batch_wait_us" => options.batch_wait_us = Some(number(&key, &value)?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown model option `{other}`; use encoding, backend, target, batch_max, batch_wait_us"
                )));
            }
        }
    }
    Ok(options)
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ApiError> {
    value.parse().map_err(|_| ApiError::BadRequest(format!("`{key}` must be a whole number, got `{value}`")))
}

/// Batching as asked for: `batch_wait_us` only with `batch_max`, within bounds.
fn batching(max_rows: Option<u32>, wait_us: Option<u64>) -> Result<Batching, ApiError> {
    match (max_rows, wait_us) {
        (None, None) => Ok(Batching::default()),
        (None, Some(_)) => Err(ApiError::BadRequest("batch_wait_us needs batch_max".to_owned())),
        (Some(max_rows), wait_us) => {
            Batching::checked(max_rows, wait_us.unwrap_or(DEFAULT_BATCH_WAIT_US)).map_err(ApiError::BadRequest)
        }
    }
}

fn model_options(query: ModelQuery) -> Result<ModelOptions, ApiError> {
    Ok(ModelOptions {
        encoding: query.encoding,
        backend: query.backend.map(|backend| match backend {
            api::Backend::Tract => BackendKind::Tract,
            api::Backend::OnnxRuntime => BackendKind::OnnxRuntime,
        }),
        target: query.target.map(|target| match target {
            api::Target::Cpu => Device::Cpu,
            api::Target::Gpu => Device::Gpu,
        }),
        job: None,
        batching: batching(query.batch_max, query.batch_wait_us)?,
    })
}

/// A model as the API shows it, with what this node batched of it.
fn model_of(app: &App, record: &ModelRecord) -> Model {
    let batching = record.batching.is_on().then(|| {
        let counts = app.models.batch_counts(record).unwrap_or_default();
        batching_of(record, counts)
    });
    Model {
        name: record.name.clone(),
        version: record.version,
        digest: record.digest.clone(),
        size: record.size,
        backend: backend_of(record.backend),
        target: target_of(record.target),
        inputs: record.inputs.iter().map(tensor_of).collect(),
        outputs: record.outputs.iter().map(tensor_of).collect(),
        created_at_ms: record.created_at_ms,
        job: record.job.clone(),
        batching,
    }
}

fn batching_of(record: &ModelRecord, counts: BatchCounts) -> api::Batching {
    api::Batching {
        batch_max: record.batching.max_rows,
        batch_wait_us: record.batching.wait_us,
        batchable: record.batchable(),
        batches: counts.batches,
        requests: counts.requests,
        rows: counts.rows,
        widest: counts.widest,
        compute_us: counts.compute_us,
    }
}

fn backend_of(backend: BackendKind) -> api::Backend {
    match backend {
        BackendKind::Tract => api::Backend::Tract,
        BackendKind::OnnxRuntime => api::Backend::OnnxRuntime,
    }
}

fn target_of(device: Device) -> api::Target {
    match device {
        Device::Cpu => api::Target::Cpu,
        Device::Gpu => api::Target::Gpu,
    }
}

fn tensor_of(spec: &TensorSpec) -> api::TensorSpec {
    let ty = match spec.ty {
        ElementType::Fp16 => api::ElementType::Fp16,
        ElementType::Fp32 => api::ElementType::Fp32,
        ElementType::Fp64 => api::ElementType::Fp64,
        ElementType::Bf16 => api::ElementType::Bf16,
        ElementType::U8 => api::ElementType::U8,
        ElementType::I32 => api::ElementType::I32,
        ElementType::I64 => api::ElementType::I64,
    };
    let shape = spec
        .shape
        .iter()
        .map(|dim| match dim {
            Dim::Fixed(size) => api::Dim::Fixed(*size),
            Dim::Symbol(name) => api::Dim::Symbol(name.clone()),
        })
        .collect();
    api::TensorSpec { name: spec.name.clone(), ty, shape }
}
