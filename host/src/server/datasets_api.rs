//! `/v1/datasets`: upload (build) a dataset, show its report, list, page
//! through its rows, delete.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use hyper::body::Incoming;

use super::App;
use super::body::{self, Body};
use super::error::{ApiError, outcome_of};
use crate::api::{DatasetList, DatasetOptions, DatasetReport, Deleted, RowsQuery};
use crate::datasets::{self, Format, FunctionPreprocessor};
use crate::engine::FunctionKind;
use crate::names::check_dataset_name;
use crate::registry::Version;
use crate::settle::Work;

/// `PUT /v1/datasets/{name}` with the data (CSV, JSON Lines or Parquet).
pub async fn upload(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &str,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    check_dataset_name(name)?;
    let options =
        DatasetOptions::parse(request.uri().query().unwrap_or_default()).map_err(|err| ApiError::BadRequest(err.0))?;
    let content_type = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type.unwrap_or_default())?;
    let preprocessor = options.preprocess.as_deref().map(|function| preprocessor_version(app, tenant, function));
    let preprocessor = preprocessor.transpose()?;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let quota = app.tenancy.check_upload(tenant, declared.unwrap_or(0)).await?;

    let store = &app.datasets;
    let upload = store.spool_file("upload");
    let (parts, incoming) = request.into_parts();
    let mut file = tokio::fs::File::create(upload.path())
        .await
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot spool the upload: {err}")))?;
    let bytes_in = app.bodies.spool(&parts.headers, incoming, app.config.max_dataset_bytes, &mut file).await?;
    drop(file);

    let built = store.spool_file("built");
    let report = match preprocessor {
        None => store.build(upload.path(), format, options, None, built.path()).await?,
        Some(version) => {
            build_preprocessed(app, &version, request_id, bytes_in, (&upload, format, options), &built).await?
        }
    };
    let report = store.put(tenant, name, built.path(), report, quota).await?;
    tracing::info!(tenant, dataset = name, version = report.version, rows = report.rows.kept, "dataset stored");
    Ok(body::json_response(StatusCode::CREATED, &report))
}

/// The preprocessor function an upload names: a function of the tenant's
/// of the preprocessor kind.
fn preprocessor_version(app: &App, tenant: &str, function: &str) -> Result<Arc<Version>, ApiError> {
    let version = app.registry.get(tenant, function).ok_or_else(|| {
        ApiError::BadRequest(format!("preprocess={function}: the tenant has no function `{function}`"))
    })?;
    let kind = version.entry.kind();
    if kind != FunctionKind::Preprocessor {
        return Err(ApiError::BadRequest(format!(
            "preprocess={function}: `{function}` is a {} function; deploy a preprocessor (world `preprocessor`)",
            kind.as_str()
        )));
    }
    Ok(version)
}

/// A build whose records run through a preprocessor function: admitted under
/// the tenant's quotas, and settled as one unit of work with what every
/// call used together.
async fn build_preprocessed(
    app: &App,
    version: &Arc<Version>,
    request_id: &str,
    bytes_in: u64,
    (upload, format, options): (&datasets::SpoolFile, Format, DatasetOptions),
    built: &datasets::SpoolFile,
) -> Result<DatasetReport, ApiError> {
    let start_ms = crate::clock::now_ms();
    let started = Instant::now();
    let tenant = version.record.tenant.as_str();
    let permit = app.tenancy.admit(tenant).await?;
    let preprocessor = Arc::new(FunctionPreprocessor::new(
        Arc::clone(&app.invoker),
        Arc::clone(version),
        tokio::runtime::Handle::current(),
        request_id.to_owned(),
    ));
    let result = app
        .datasets
        .build(upload.path(), format, options, Some(Arc::clone(&preprocessor)), built.path())
        .await
        .map_err(ApiError::from);
    drop(permit);
    let work = Work {
        id: request_id,
        tenant,
        function: &version.record.name,
        version: version.record.version,
        start_ms,
        started,
        bytes_in,
        bytes_out: result.as_ref().ok().and_then(|r| r.preprocess.as_ref()).map_or(0, |p| p.bytes_out),
        metrics: &version.metrics,
        stats: Some(&version.stats),
    };
    app.settler.settle(work, &preprocessor.used(), outcome_of(&result)).await?;
    result
}

/// `GET /v1/datasets`.
pub async fn list(app: &App, tenant: &str) -> Result<http::Response<Body>, ApiError> {
    let datasets = app.datasets.list(tenant).await?;
    Ok(body::json_response(StatusCode::OK, &DatasetList { datasets }))
}

/// `GET /v1/datasets/{name}[?version=N]`.
pub async fn show(app: &App, tenant: &str, name: &str, query: &str) -> Result<http::Response<Body>, ApiError> {
    let mut version = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "version" => {
                version = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(format!("version must be a whole number from 1, got `{value}`"))
                })?);
            }
            other => return Err(ApiError::BadRequest(format!("unknown option `{other}`; use version"))),
        }
    }
    let report = app.datasets.get(tenant, name, version).await?;
    Ok(body::json_response(StatusCode::OK, &report))
}

/// `GET /v1/datasets/{name}/rows?split=&offset=&limit=&version=`.
pub async fn rows(app: &App, tenant: &str, name: &str, query: &str) -> Result<http::Response<Body>, ApiError> {
    let query = RowsQuery::parse(query).map_err(|err| ApiError::BadRequest(err.0))?;
    let (path, _) = app.datasets.file(tenant, name, query.version).await?;
    let page = tokio::task::spawn_blocking(move || datasets::rows_page(&path, query.split, query.offset, query.limit))
        .await
        .map_err(|err| ApiError::Internal(anyhow::anyhow!("reading rows stopped: {err}")))??;
    Ok(body::json_response(StatusCode::OK, &page))
}

/// `DELETE /v1/datasets/{name}`: every version.
pub async fn delete(app: &App, tenant: &str, name: &str) -> Result<http::Response<Body>, ApiError> {
    app.datasets.delete(tenant, name).await?;
    tracing::info!(tenant, dataset = name, "dataset deleted");
    Ok(body::json_response(StatusCode::OK, &Deleted { deleted: name.to_owned() }))
}
