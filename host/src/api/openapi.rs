//! The OpenAPI 3.1 document of the HTTP API, served at `GET /v1/openapi.json`.
//!
//! Each route is declared once below, as a `#[utoipa::path]` on an empty
//! function that stands for it; the schemas come from the types of this
//! module's parent. The server's route table (`server/routes.rs`) is checked
//! against this document by a test, in both directions.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The name of the security scheme of every key.
pub const API_KEY: &str = "api_key";
/// The name of the security scheme of routes that need an admin key.
pub const ADMIN_KEY: &str = "admin_key";

/// The document, built from the declarations below.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The HTTP methods of `item`'s operations, upper case, with the operations.
pub fn operations(item: &PathItem) -> Vec<(&'static str, &Operation)> {
    [
        ("GET", &item.get),
        ("HEAD", &item.head),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("DELETE", &item.delete),
        ("PATCH", &item.patch),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_ref().map(|operation| (method, operation)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("head", &mut item.head),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
        ("options", &mut item.options),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "muon",
        description = "The HTTP API of muon, a serverless WebAssembly function host for AI workloads.\n\n\
            Every `/v1` route but this document needs an API key (`Authorization: Bearer <key>`); \
            the routes under the `admin_key` scheme need an admin key. A tenant's key acts for its own \
            tenant only: another tenant's objects answer `404`, as if absent. Errors answer \
            `{\"error\": {\"code\", \"message\"}}` (`ErrorBody`); a path that exists for other methods \
            answers `405` with `Allow`, any other path `404`.",
    ),
    paths(
        routes::call_function_root,
        routes::call_function,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi_json,
        routes::list_functions,
        routes::deploy_function,
        routes::show_function,
        routes::delete_function,
        routes::rollback_function,
        routes::invoke_function,
        routes::list_models,
        routes::upload_model,
        routes::show_model,
        routes::set_model_batching,
        routes::delete_model,
        routes::list_datasets,
        routes::upload_dataset,
        routes::show_dataset,
        routes::delete_dataset,
        routes::dataset_rows,
        routes::submit_job,
        routes::list_jobs,
        routes::show_job,
        routes::delete_job,
        routes::cancel_job,
        routes::job_events,
        routes::job_logs,
        routes::job_parameters,
        routes::job_report,
        routes::job_report_svg,
        routes::create_tenant,
        routes::list_tenants,
        routes::issue_key,
        routes::set_quotas,
        routes::show_quotas,
        routes::revoke_key,
        routes::usage_totals,
        routes::usage_records,
        routes::function_stats,
        routes::model_stats,
        routes::function_thresholds,
        routes::set_function_thresholds,
        routes::tenant_thresholds,
        routes::set_tenant_thresholds,
        routes::list_alerts,
        routes::list_events,
        routes::list_sinks,
        routes::put_sink,
        routes::delete_sink,
    ),
    // The events' type is named here: the stream's schema is text, so no route refers to it.
    components(schemas(super::ErrorCode, super::JobEvent)),
    modifiers(&Security, &CommonErrors, &OneIdPerMethod),
    security(("api_key" = [])),
    tags(
        (name = "calls", description = "Calling functions."),
        (name = "functions", description = "Deploying and managing functions."),
        (name = "models", description = "A tenant's models, for wasi-nn `load-by-name`."),
        (name = "datasets", description = "A tenant's training data: uploaded, cleaned, split and described."),
        (name = "jobs", description = "Training jobs: a training-step function run by the host over a dataset, with search, checkpoints, events and reports."),
        (name = "tenants", description = "Tenants, their keys and quotas."),
        (name = "usage", description = "What requests used and cost, from the ledger."),
        (name = "alerts", description = "Alerts, the webhooks they are posted to, and the audit log."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
        (name = "monitor", description = "Live statistics, anomaly detectors and their thresholds, alerts and the audit log."),
    ),
)]
struct ApiDoc;

/// The two bearer schemes: any key, and an admin key.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("muon_sk_...")
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            API_KEY,
            scheme("An API key (`muon_sk_...`): a tenant's key acts for that tenant, an admin key for any."),
        );
        components.add_security_scheme(
            ADMIN_KEY,
            scheme("An admin key: the key in `DATA_DIR/admin.key`, or one issued with `{\"admin\": true}`."),
        );
    }
}

/// Errors any route may answer, added where a route does not describe them itself.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let management = path.starts_with("/v1/");
            for (_, operation) in operations_mut(item) {
                let keyless = operation
                    .security
                    .as_ref()
                    .is_some_and(|all| all.iter().all(|requirement| *requirement == SecurityRequirement::default()));
                let mut common = vec![
                    ("500", "`internal`: a host-side failure; the details are in the server's log."),
                    ("503", "`unavailable`: muon is shutting down or its database does not answer."),
                ];
                if !keyless {
                    common.push(("401", "`unauthorized`: no valid API key."));
                }
                if management && !keyless {
                    common.push(("429", "`rate_limited`: the tenant's management API rate is over its limit."));
                }
                for (status, description) in common {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// A route declared for several methods (the function calls) gets one
/// operation id per method, `call_function_get`..., as ids must be unique.
struct OneIdPerMethod;

impl Modify for OneIdPerMethod {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let methods = operations(item).len();
            for (method, operation) in operations_mut(item) {
                if let (true, Some(id)) = (methods > 1, &mut operation.operation_id) {
                    id.push('_');
                    id.push_str(method);
                }
            }
        }
    }
}

/// An error response with the error body.
fn error(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
}

/// Declarations only: each function stands for one route of the document.
mod routes {
    #![expect(dead_code, reason = "each function only carries its route's #[utoipa::path]")]

    use crate::api::datasets::{DatasetList, DatasetQuery, DatasetReport, RowsPage, RowsQuery};
    use crate::api::functions::{DeployQuery, FunctionDetail, FunctionList, FunctionVersion};
    use crate::api::jobs::{Job, JobCreated, JobList, JobLogs, JobReport, JobSpec};
    use crate::api::models::{BatchSettings, Model, ModelList, ModelQuery};
    use crate::api::monitor::{
        AlertList, AlertQuery, AuditEventList, AuditQuery, Sink, SinkList, SinkRequest, Stats, StatsQuery,
        ThresholdSettings, Thresholds,
    };
    use crate::api::tenants::{IssuedKey, NewKey, NewTenant, Quotas, TenantCreated, TenantList, TenantQuotas};
    use crate::api::usage::{UsageGroups, UsageQuery, UsageRecords, UsageRecordsQuery};
    use crate::api::{Deleted, ErrorBody, Health, Readiness, Revoked};

    /// Call a handler or `wasi:http` function at its root path.
    ///
    /// Any method, any body: the function sees the method, headers and body, and
    /// its answer is the response. A public function needs no key; any other needs
    /// a key of its tenant (or an admin key).
    #[utoipa::path(
    method(get, head, post, put, delete, patch, options, trace),
    path = "/fn/{tenant}/{name}",
    tag = "calls",
    params(
        ("tenant" = String, Path, description = "The function's tenant."),
        ("name" = String, Path, description = "The function's name."),
    ),
    request_body(description = "Anything; passed to the function.", content(("*/*"))),
    responses(
        (status = 200, description = "The function's response, whatever its status, headers and body.", content(("*/*"))),
        (status = 400, description = "`bad_request`: the function is typed (call `POST /v1/functions/{name}/invoke`).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function visible to the caller.", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the request body did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the request body is over `max_request_bytes`.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`, `rate_limited`: a tenant limit or the anonymous budget is used up.", body = ErrorBody),
        (status = 500, description = "`trap`, `memory_limit`, `invalid_response`, `response_too_large`, `internal`.", body = ErrorBody),
        (status = 503, description = "`overloaded`, `circuit_open` (the function's breaker is open; it did not run), `bodies_busy`, `ledger_unavailable`, `unavailable` (`Retry-After`).", body = ErrorBody),
        (status = 504, description = "`timeout`: the function ran past its deadline.", body = ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
    fn call_function_root() {}

    /// Call a handler or `wasi:http` function at a path below its root.
    ///
    /// Like `/fn/{tenant}/{name}`; the function sees `/{rest}` (and the query) as its path.
    #[utoipa::path(
    method(get, head, post, put, delete, patch, options, trace),
    path = "/fn/{tenant}/{name}/{rest}",
    tag = "calls",
    params(
        ("tenant" = String, Path, description = "The function's tenant."),
        ("name" = String, Path, description = "The function's name."),
        ("rest" = String, Path, description = "The rest of the path, slashes included, as the function sees it."),
    ),
    request_body(description = "Anything; passed to the function.", content(("*/*"))),
    responses(
        (status = 200, description = "The function's response, whatever its status, headers and body.", content(("*/*"))),
        (status = 400, description = "`bad_request`: the function is typed (call `POST /v1/functions/{name}/invoke`).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function visible to the caller.", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the request body did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the request body is over `max_request_bytes`.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`, `rate_limited`: a tenant limit or the anonymous budget is used up.", body = ErrorBody),
        (status = 500, description = "`trap`, `memory_limit`, `invalid_response`, `response_too_large`, `internal`.", body = ErrorBody),
        (status = 503, description = "`overloaded`, `circuit_open` (the function's breaker is open; it did not run), `bodies_busy`, `ledger_unavailable`, `unavailable` (`Retry-After`).", body = ErrorBody),
        (status = 504, description = "`timeout`: the function ran past its deadline.", body = ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
    fn call_function() {}

    /// Liveness: the process answers.
    #[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive (also while shutting down).", body = Health)),
    security(()),
)]
    fn healthz() {}

    /// Readiness: not shutting down, and the database answers; and what is degraded.
    ///
    /// No key needed; with an admin key each degraded check also names what
    /// is degraded (`tenant/name`).
    #[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Takes work: `ok`, or `degraded` (the ledger behind, models unloadable, sinks failing, circuit breakers open; see `checks`).", body = Readiness),
        (status = 503, description = "`unavailable`: shutting down, or the database does not answer (`error.code` is `unavailable`).", body = Readiness),
    ),
    security(()),
)]
    fn readyz() {}

    /// Prometheus metrics (admin key; or without a key on the `metrics_listen` address).
    #[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 403, description = "`forbidden`: not an admin key.", body = ErrorBody),
    ),
    security(("admin_key" = [])),
)]
    fn metrics() {}

    /// This document (no key needed).
    #[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)),
    security(()),
)]
    fn openapi_json() {}

    /// List the active version of each of the tenant's functions.
    #[utoipa::path(
    get,
    path = "/v1/functions",
    tag = "functions",
    responses((status = 200, description = "The functions.", body = FunctionList)),
)]
    fn list_functions() {}

    /// Deploy a component as function `name`: a new version if it exists, and the active one.
    #[utoipa::path(
    put,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name."), DeployQuery),
    request_body(description = "The component: a `.wasm` built for wasm32-wasip2.", content(("application/wasm"), ("application/octet-stream"))),
    responses(
        (status = 201, description = "Deployed; the new, active version.", body = FunctionVersion),
        (status = 400, description = "`invalid_component`, `unknown_import`, `bad_request` (a name or option).", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the component did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the component is over `max_deploy_bytes`.", body = ErrorBody),
        (status = 422, description = "`compile_timeout`: compiling took longer than the host allows.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (functions, storage, memory, deadline), `rate_limited`.", body = ErrorBody),
        (status = 503, description = "`compile_busy`, `bodies_busy` (`Retry-After`), `unavailable`.", body = ErrorBody),
    ),
)]
    fn deploy_function() {}

    /// Show a function: its active version and every kept version.
    #[utoipa::path(
    get,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The function.", body = FunctionDetail),
        (status = 400, description = "`bad_request`: not a valid function name.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn show_function() {}

    /// Delete a function and all its versions.
    #[utoipa::path(
    delete,
    path = "/v1/functions/{name}",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 400, description = "`bad_request`: not a valid function name.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn delete_function() {}

    /// Make the previous version of a function active again.
    #[utoipa::path(
    post,
    path = "/v1/functions/{name}/rollback",
    tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "Rolled back; the version now active.", body = FunctionVersion),
        (status = 400, description = "`bad_request`: not a valid function name, or no version before the active one.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn rollback_function() {}

    /// Call a typed function (preprocessor, training step) with JSON in and out.
    #[utoipa::path(
    post,
    path = "/v1/functions/{name}/invoke",
    tag = "calls",
    params(("name" = String, Path, description = "The function's name, of the key's tenant.")),
    request_body(description = "The function's input.", content = Value, content_type = "application/json"),
    responses(
        (status = 200, description = "The function's output.", body = Value),
        (status = 400, description = "`bad_request`: not a typed function, or the input is not what it takes.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the input did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the input is over `max_request_bytes`.", body = ErrorBody),
        (status = 422, description = "`function_error`: the function rejected the input.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`, `rate_limited`: a tenant limit is used up.", body = ErrorBody),
        (status = 500, description = "`trap`, `memory_limit`, `response_too_large`, `internal`.", body = ErrorBody),
        (status = 503, description = "`overloaded`, `circuit_open` (the function's breaker is open; it did not run), `bodies_busy`, `ledger_unavailable`, `unavailable` (`Retry-After`).", body = ErrorBody),
        (status = 504, description = "`timeout`: the function ran past its deadline.", body = ErrorBody),
    ),
)]
    fn invoke_function() {}

    /// List the tenant's models.
    #[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "The models.", body = ModelList)),
)]
    fn list_models() {}

    /// Upload an ONNX model as `name`, replacing what `name` held.
    #[utoipa::path(
    put,
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's name."), ModelQuery),
    request_body(description = "The model file (ONNX, weights included).", content(("application/octet-stream"))),
    responses(
        (status = 201, description = "Stored and loaded.", body = Model),
        (status = 400, description = "`invalid_model`, `bad_request` (a name or option).", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the model did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the model is over `max_model_bytes`.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (storage), `rate_limited`.", body = ErrorBody),
    ),
)]
    fn upload_model() {}

    /// Show a model.
    #[utoipa::path(
    get,
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "The model.", body = Model),
        (status = 404, description = "`not_found`: no such model.", body = ErrorBody),
    ),
)]
    fn show_model() {}

    /// Set how a model's concurrent computes are merged into batches.
    ///
    /// The same bytes become the model's next version with these settings, which
    /// replaces the one before, as an upload would. Requests whose inputs agree on
    /// every dimension but the first are computed together, up to `batch_max` rows;
    /// each gets exactly its own rows back and is billed its share of the batch's
    /// compute time by rows.
    #[utoipa::path(
    put,
    path = "/v1/models/{name}/batching",
    tag = "models",
    params(("name" = String, Path, description = "The model's name.")),
    request_body = BatchSettings,
    responses(
        (status = 200, description = "The model's new version.", body = Model),
        (status = 400, description = "`bad_request`: invalid JSON, an unknown field, a setting out of bounds.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such model.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (storage), `rate_limited`.", body = ErrorBody),
    ),
)]
    fn set_model_batching() {}

    /// Delete a model.
    #[utoipa::path(
    delete,
    path = "/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 400, description = "`bad_request`: not a valid model name.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such model.", body = ErrorBody),
    ),
)]
    fn delete_model() {}

    /// List the tenant's datasets (the latest version of each).
    #[utoipa::path(
    get,
    path = "/v1/datasets",
    tag = "datasets",
    responses((status = 200, description = "The datasets.", body = DatasetList)),
)]
    fn list_datasets() {}

    /// Upload data as the next version of dataset `name`: read, cleaned, split and described.
    ///
    /// The body is CSV (a header row, RFC 4180 quoting, an optional UTF-8 BOM), JSON Lines or
    /// Parquet, streamed to disk (never held in memory). Versions are immutable; the report says
    /// what happened to every row.
    #[utoipa::path(
    put,
    path = "/v1/datasets/{name}",
    tag = "datasets",
    params(("name" = String, Path, description = "The dataset's name."), DatasetQuery),
    request_body(description = "The data.", content(("text/csv"), ("application/x-ndjson"), ("application/vnd.apache.parquet"))),
    responses(
        (status = 201, description = "Stored: the dataset report.", body = DatasetReport),
        (status = 400, description = "`bad_request`: a name or option (the message names it), or a preprocessor that is not one.", body = ErrorBody),
        (status = 408, description = "`body_timeout`: the data did not arrive in time.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the data is over `max_dataset_bytes`.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not CSV, JSON Lines or Parquet.", body = ErrorBody),
        (status = 422, description = "`bad_rows`: more bad rows than `max_bad_rows` (the message names the first); `invalid_data`: missing values with `missing=error`, no rows left, too many categories.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (storage), `rate_limited`.", body = ErrorBody),
    ),
)]
    fn upload_dataset() {}

    /// Show a dataset's report: the latest version, or `?version=N`.
    #[utoipa::path(
    get,
    path = "/v1/datasets/{name}",
    tag = "datasets",
    params(
        ("name" = String, Path, description = "The dataset's name."),
        ("version" = Option<u64>, Query, description = "A version [default: the latest]."),
    ),
    responses(
        (status = 200, description = "The report.", body = DatasetReport),
        (status = 404, description = "`not_found`: no such dataset or version.", body = ErrorBody),
    ),
)]
    fn show_dataset() {}

    /// Delete a dataset, every version.
    #[utoipa::path(
    delete,
    path = "/v1/datasets/{name}",
    tag = "datasets",
    params(("name" = String, Path, description = "The dataset's name.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, description = "`not_found`: no such dataset.", body = ErrorBody),
    ),
)]
    fn delete_dataset() {}

    /// A page of a split's rows, as stored (after cleaning and normalization).
    #[utoipa::path(
    get,
    path = "/v1/datasets/{name}/rows",
    tag = "datasets",
    params(("name" = String, Path, description = "The dataset's name."), RowsQuery),
    responses(
        (status = 200, description = "The rows.", body = RowsPage),
        (status = 400, description = "`bad_request`: an option (limit at most 1000).", body = ErrorBody),
        (status = 404, description = "`not_found`: no such dataset or version.", body = ErrorBody),
    ),
)]
    fn dataset_rows() {}

    /// Submit a training job; it runs on the host's job workers.
    ///
    /// The spec names a training-step function and a dataset of the tenant, the epochs, the
    /// hyper-parameters (fixed numbers or search spaces), the search and its early stopping, the
    /// objective, checkpoints, limits and an export. Unknown fields are refused.
    #[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = JobSpec,
    responses(
        (status = 201, description = "Accepted, `queued`.", body = JobCreated),
        (status = 400, description = "`bad_request`: invalid JSON, or a field of the spec (the message names it), or an unknown function or dataset.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the spec is over `max_request_bytes`.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded` (`max_concurrent_jobs`, `max_trial_parallelism`), `rate_limited`.", body = ErrorBody),
    ),
)]
    fn submit_job() {}

    /// List the tenant's jobs, newest first.
    #[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    responses((status = 200, description = "The jobs, without their trials.", body = JobList)),
)]
    fn list_jobs() {}

    /// Show a job: its state, spec and each trial's hyper-parameters, state, epoch and latest metrics.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = Job),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn show_job() {}

    /// Delete a job with its checkpoints, events and logs, stopping it first if it runs.
    #[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn delete_job() {}

    /// Cancel a job: its trials stop at their next step.
    #[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancelled; the job.", body = Job),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
        (status = 409, description = "`conflict`: the job is already over.", body = ErrorBody),
    ),
)]
    fn cancel_job() {}

    /// Follow a job as Server-Sent Events, until it is over.
    ///
    /// Each event is `id: N` (its number in the job, from 1) and `data: ` a `JobEvent` as JSON:
    /// an epoch of a trial with its metrics, or a change of a trial's or the job's state. A client
    /// that reconnects with `Last-Event-ID: N` gets every event after N, none twice. The stream
    /// ends after the job's final state.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id."),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event [default: from the start]."),
    ),
    responses(
        (status = 200, description = "The events: `id: N` and `data: <JobEvent JSON>` each.", content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request`: `Last-Event-ID` is not an event number.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn job_events() {}

    /// What each trial's guests printed (stdout and stderr), the most recent part of it.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}/logs",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The logs, per trial.", body = JobLogs),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn job_logs() {}

    /// A trial's parameters at its latest checkpoint: the best trial's unless `?trial=N`.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}/parameters",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id."),
        ("trial" = Option<u32>, Query, description = "A trial's number [default: the best trial]."),
    ),
    responses(
        (status = 200, description = "`{\"parameters\": [tensor, ...]}`, each tensor `{name, dimensions, type, data}` as a training step's JSON.", body = Object),
        (status = 400, description = "`bad_request`: `trial` is not a number, or an unknown query parameter.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such job, no best trial yet, or no checkpoint of that trial.", body = ErrorBody),
        (status = 500, description = "`response_too_large`: the parameters are over `max_response_bytes`; `internal`.", body = ErrorBody),
    ),
)]
    fn job_parameters() {}

    /// A job's report: per-trial curves, the best trial and its test figures, time and cost.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The report (also while the job runs: the curves so far).", body = JobReport),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn job_report() {}

    /// A job's curves drawn as SVG: each metric by epoch, a line per trial.
    #[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report.svg",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The drawing.", content_type = "image/svg+xml", body = String),
        (status = 404, description = "`not_found`: no such job visible to the caller.", body = ErrorBody),
    ),
)]
    fn job_report_svg() {}

    /// A function's live statistics by version over a window: calls, outcomes, latency percentiles, CPU,
    /// compute by device and cost, with the 10-second windows for charts.
    #[utoipa::path(
    get,
    path = "/v1/functions/{name}/stats",
    tag = "monitor",
    params(("name" = String, Path, description = "The function's name."), StatsQuery),
    responses(
        (status = 200, description = "The statistics; windows before `covered_from_ms` are empty, not zero.", body = Stats),
        (status = 400, description = "`bad_request`: an unknown parameter or a bad window.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn function_stats() {}

    /// A model's live statistics by version: computes, outcomes, compute-time percentiles by device.
    #[utoipa::path(
    get,
    path = "/v1/models/{name}/stats",
    tag = "monitor",
    params(("name" = String, Path, description = "The model's name."), StatsQuery),
    responses(
        (status = 200, description = "The statistics.", body = Stats),
        (status = 400, description = "`bad_request`: an unknown parameter or a bad window.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such model.", body = ErrorBody),
    ),
)]
    fn model_stats() {}

    /// The detectors' thresholds for one function: what it set, and what applies.
    #[utoipa::path(
    get,
    path = "/v1/functions/{name}/thresholds",
    tag = "monitor",
    params(("name" = String, Path, description = "The function's name.")),
    responses(
        (status = 200, description = "The thresholds.", body = ThresholdSettings),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn function_thresholds() {}

    /// Set the detectors' thresholds for one function; unset fields take the tenant's.
    #[utoipa::path(
    put,
    path = "/v1/functions/{name}/thresholds",
    tag = "monitor",
    params(("name" = String, Path, description = "The function's name.")),
    request_body = Thresholds,
    responses(
        (status = 200, description = "Set.", body = ThresholdSettings),
        (status = 400, description = "`bad_request`: an unknown field or a bad value, named.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such function.", body = ErrorBody),
    ),
)]
    fn set_function_thresholds() {}

    /// The detectors' thresholds for the tenant's functions and models.
    #[utoipa::path(
    get,
    path = "/v1/monitor/thresholds",
    tag = "monitor",
    responses((status = 200, description = "The thresholds.", body = ThresholdSettings)),
)]
    fn tenant_thresholds() {}

    /// Set the detectors' thresholds for the tenant; unset fields take the host defaults.
    #[utoipa::path(
    put,
    path = "/v1/monitor/thresholds",
    tag = "monitor",
    request_body = Thresholds,
    responses(
        (status = 200, description = "Set.", body = ThresholdSettings),
        (status = 400, description = "`bad_request`: an unknown field or a bad value, named.", body = ErrorBody),
    ),
)]
    fn set_tenant_thresholds() {}

    /// Create a tenant (admin key); the answer holds its first key, shown once.
    #[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created.", body = TenantCreated),
        (status = 400, description = "`bad_request`: invalid JSON or tenant name.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin key.", body = ErrorBody),
        (status = 409, description = "`conflict`: the tenant exists.", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the body is over 64 KiB.", body = ErrorBody),
    ),
    security(("admin_key" = [])),
)]
    fn create_tenant() {}

    /// List every tenant with its effective quotas (admin key).
    #[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "The tenants.", body = TenantList),
        (status = 403, description = "`forbidden`: not an admin key.", body = ErrorBody),
    ),
    security(("admin_key" = [])),
)]
    fn list_tenants() {}

    /// Issue a key for a tenant: the caller's own, or any with an admin key.
    ///
    /// `{"admin": true}` issues an admin key, and needs one. The secret is shown once.
    #[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/keys",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant the key acts for.")),
    request_body(content = Option<NewKey>, description = "Optional: an empty body issues a tenant key."),
    responses(
        (status = 201, description = "Issued.", body = IssuedKey),
        (status = 400, description = "`bad_request`: invalid JSON.", body = ErrorBody),
        (status = 403, description = "`forbidden`: an admin key was asked for without one.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such tenant visible to the caller.", body = ErrorBody),
        (status = 429, description = "`quota_exceeded`: the tenant holds `max_keys` live keys; `rate_limited`.", body = ErrorBody),
    ),
)]
    fn issue_key() {}

    /// Set the API layer of a tenant's quotas (admin key); the answer is the effective quotas.
    #[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/quotas",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant.")),
    request_body = Quotas,
    responses(
        (status = 200, description = "Set; the effective quotas.", body = TenantQuotas),
        (status = 400, description = "`bad_request`: invalid JSON or an unknown field.", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin key.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such tenant.", body = ErrorBody),
    ),
    security(("admin_key" = [])),
)]
    fn set_quotas() {}

    /// Show a tenant's effective quotas (its own key, or an admin key).
    #[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/quotas",
    tag = "tenants",
    params(("tenant" = String, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The effective quotas.", body = TenantQuotas),
        (status = 404, description = "`not_found`: no such tenant visible to the caller.", body = ErrorBody),
    ),
)]
    fn show_quotas() {}

    /// Revoke a key: one of the caller's tenant, or any with an admin key.
    #[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "Revoked.", body = Revoked),
        (status = 403, description = "`forbidden`: an admin key, revoked with a tenant's key.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such key visible to the caller.", body = ErrorBody),
        (status = 409, description = "`conflict`: the last live admin key cannot be revoked.", body = ErrorBody),
    ),
)]
    fn revoke_key() {}

    /// Usage totals, grouped by function, day or hour.
    #[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "The totals.", body = UsageGroups),
        (status = 400, description = "`bad_request`: an unknown or invalid parameter.", body = ErrorBody),
        (status = 404, description = "`not_found`: another tenant, without an admin key.", body = ErrorBody),
    ),
)]
    fn usage_totals() {}

    /// Raw usage records, one page at a time, in request-id order.
    #[utoipa::path(
    get,
    path = "/v1/usage/records",
    tag = "usage",
    params(UsageRecordsQuery),
    responses(
        (status = 200, description = "One page.", body = UsageRecords),
        (status = 400, description = "`bad_request`: an unknown or invalid parameter.", body = ErrorBody),
        (status = 404, description = "`not_found`: another tenant, without an admin key.", body = ErrorBody),
    ),
)]
    fn usage_records() {}

    /// The caller's tenant's alerts, newest first.
    #[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "alerts",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts.", body = AlertList),
        (status = 400, description = "`bad_request`: an unknown or invalid parameter.", body = ErrorBody),
    ),
)]
    fn list_alerts() {}

    /// The caller's tenant's audit log, oldest first: deploys, rollbacks,
    /// promotions, alerts, model loads and job state changes. Poll with
    /// `after=next_after` for newer events.
    #[utoipa::path(
    get,
    path = "/v1/events",
    tag = "alerts",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page.", body = AuditEventList),
        (status = 400, description = "`bad_request`: an unknown or invalid parameter.", body = ErrorBody),
    ),
)]
    fn list_events() {}

    /// The caller's tenant's alert sinks, by name; secrets are never shown.
    #[utoipa::path(
    get,
    path = "/v1/alerts/sinks",
    tag = "alerts",
    responses((status = 200, description = "The sinks and how their last delivery went.", body = SinkList)),
)]
    fn list_sinks() {}

    /// Register (or replace) an alert sink: muon POSTs each alert of the
    /// tenant, when it fires and when it resolves, as Alertmanager's webhook
    /// payload (version 4), signed in `X-Muon-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    /// Deliveries are retried with backoff; private, loopback and link-local
    /// addresses are refused unless the operator allows them.
    #[utoipa::path(
    put,
    path = "/v1/alerts/sinks/{name}",
    tag = "alerts",
    params(("name" = String, Path, description = "The sink's name.")),
    request_body = SinkRequest,
    responses(
        (status = 200, description = "Replaced.", body = Sink),
        (status = 201, description = "Registered.", body = Sink),
        (status = 400, description = "`bad_request`: invalid JSON, an unknown field, a bad name, a URL that is not http(s) with a host, a private address, an empty secret.", body = ErrorBody),
    ),
)]
    fn put_sink() {}

    /// Delete an alert sink.
    #[utoipa::path(
    delete,
    path = "/v1/alerts/sinks/{name}",
    tag = "alerts",
    params(("name" = String, Path, description = "The sink's name.")),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        (status = 404, description = "`not_found`: no such sink of the caller's tenant.", body = ErrorBody),
    ),
)]
    fn delete_sink() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> serde_json::Value {
        serde_json::to_value(document()).unwrap_or_default()
    }

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_error_code() {
        let doc = json();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
        let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        let all: Vec<&str> = crate::api::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        for name in [
            "ErrorBody",
            "FunctionVersion",
            "FunctionDetail",
            "Model",
            "Quotas",
            "UsageRecords",
            "UsageGroups",
            "JobSpec",
            "Job",
            "JobEvent",
            "JobReport",
            "Readiness",
            "BreakerOptions",
        ] {
            assert!(doc["components"]["schemas"][name].is_object(), "schema {name} is missing");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let document = document();
        let mut ids: Vec<&str> = document
            .paths
            .paths
            .values()
            .flat_map(operations)
            .filter_map(|(_, operation)| operation.operation_id.as_deref())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "operation ids repeat");
    }

    #[test]
    fn every_operation_declares_its_path_parameters_and_errors() {
        let document = document();
        for (path, item) in &document.paths.paths {
            let wanted: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            for (method, operation) in operations(item) {
                let op = serde_json::to_value(operation).unwrap_or_default();
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(declared, wanted, "{method} {path}: path parameters");
                // `/readyz` answers `503` with its checks, and the error body's `error` in them.
                let error_shapes = ["#/components/schemas/ErrorBody", "#/components/schemas/Readiness"];
                let errors = op["responses"].as_object().into_iter().flatten().filter(|(status, response)| {
                    status.starts_with(['4', '5'])
                        && error_shapes
                            .iter()
                            .any(|shape| response["content"]["application/json"]["schema"]["$ref"] == *shape)
                });
                assert!(errors.count() >= 2, "{method} {path}: error responses");
            }
        }
    }
}
