//! `/v1/functions`: deploy, list, show, delete and roll back functions.

use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{self, Deleted, DeployQuery, FunctionDetail, FunctionList, FunctionVersion, RolloutState};
use crate::db::VersionRecord;
use crate::monitor::MonitorSettings;
use crate::names::FunctionName;
use crate::registry::{BreakerSettings, DeployOptions, RolloutPlan, Version, parse_allowed_hosts, parse_models};

/// `PUT /v1/functions/{name}` with the component's bytes.
pub async fn deploy(
    app: &App,
    tenant: &str,
    request: http::Request<Incoming>,
    name: &FunctionName,
) -> Result<http::Response<Body>, ApiError> {
    let query = deploy_query(request.uri().query().unwrap_or_default())?;
    let options = deploy_options(query, &app.config.monitor)?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, app.config.max_deploy_bytes).await?;
    let limits = app.registry.limits_for(&options)?;
    let is_new = app.registry.get(tenant, name.as_str()).is_none();
    let quota =
        app.tenancy.check_deploy(tenant, limits.memory_mb, limits.timeout_ms, is_new, bytes.len() as u64).await?;
    let version = app.registry.deploy(tenant, name, bytes, options, quota).await?;
    tracing::info!(function = %version.label, version = version.record.version, kind = %version.record.kind, "deployed");
    Ok(body::json_response(StatusCode::CREATED, &version_of(&version)?))
}

/// `GET /v1/functions`.
pub fn list(app: &App, tenant: &str) -> Result<http::Response<Body>, ApiError> {
    let functions = app.registry.list(tenant).iter().map(|v| version_of(v)).collect::<Result<_, _>>()?;
    Ok(body::json_response(StatusCode::OK, &FunctionList { functions }))
}

/// `GET /v1/functions/{name}`: the active version and the history.
pub async fn show(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    let active =
        app.registry.get(tenant, name.as_str()).ok_or_else(|| ApiError::NotFound(format!("function `{name}`")))?;
    let versions = app.registry.history(tenant, name).await?.iter().map(record_of).collect::<Result<_, _>>()?;
    let rollout = app.registry.rollout(tenant, name.as_str()).map(|rollout| RolloutState {
        mode: if rollout.is_watch() { "watch" } else { "canary" }.to_owned(),
        stable_version: rollout.row.stable_version,
        candidate_version: rollout.row.candidate_version,
        percent: rollout.row.percent,
        started_at_ms: rollout.row.started_at_ms,
        until_ms: rollout.row.until_ms,
    });
    Ok(body::json_response(StatusCode::OK, &FunctionDetail { active: version_of(&active)?, versions, rollout }))
}

/// `DELETE /v1/functions/{name}`.
pub async fn delete(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    app.registry.delete(tenant, name).await?;
    crate::telemetry::forget_function(&format!("{tenant}/{name}"));
    tracing::info!(function = %name, "deleted");
    Ok(body::json_response(StatusCode::OK, &Deleted { deleted: name.as_str().to_owned() }))
}

/// `POST /v1/functions/{name}/rollback`.
pub async fn rollback(app: &App, tenant: &str, name: &FunctionName) -> Result<http::Response<Body>, ApiError> {
    let version = app.registry.rollback(tenant, name).await?;
    tracing::info!(function = %version.label, version = version.record.version, "rolled back");
    Ok(body::json_response(StatusCode::OK, &version_of(&version)?))
}

/// The query of a deploy, parsed strictly: an unknown option or a bad value is `400`.
fn deploy_query(query: &str) -> Result<DeployQuery, ApiError> {
    let mut options = DeployQuery::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{what} must be a positive whole number, got `{value}`")))
        };
        match key.as_ref() {
            "memory_mb" => options.memory_mb = Some(number("memory_mb")?),
            "timeout_ms" => options.timeout_ms = Some(number("timeout_ms")?),
            "max_concurrency" => options.max_concurrency = Some(number("max_concurrency")?),
            "public" => {
                options.public = Some(match value.as_ref() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(ApiError::BadRequest(format!("public must be true or false, got `{value}`"))),
                });
            }
            "allowed_hosts" => options.allowed_hosts = Some(value.into_owned()),
            "models" => options.models = Some(value.into_owned()),
            "rollout" => options.rollout = Some(value.into_owned()),
            "canary_percent" => options.canary_percent = Some(number("canary_percent")?),
            "canary_for_s" => options.canary_for_s = Some(number("canary_for_s")?),
            "watch_s" => options.watch_s = Some(number("watch_s")?),
            "breaker_failures" => options.breaker_failures = Some(number("breaker_failures")?),
            "breaker_cooldown_s" => options.breaker_cooldown_s = Some(number("breaker_cooldown_s")?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown deploy option `{other}`; use memory_mb, timeout_ms, max_concurrency, public, \
                     allowed_hosts, models, rollout, canary_percent, canary_for_s, watch_s, breaker_failures, \
                     breaker_cooldown_s"
                )));
            }
        }
    }
    Ok(options)
}

fn deploy_options(query: DeployQuery, monitor: &MonitorSettings) -> Result<DeployOptions, ApiError> {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let rollout = rollout_plan(&query, monitor)?;
    Ok(DeployOptions {
        rollout,
        memory_mb: query.memory_mb.map(clamp),
        timeout_ms: query.timeout_ms,
        max_concurrency: query.max_concurrency.map(clamp),
        public: query.public.unwrap_or(false),
        allowed_hosts: query.allowed_hosts.as_deref().map(parse_allowed_hosts).transpose()?.unwrap_or_default(),
        models: query.models.as_deref().map(parse_models).transpose()?.flatten(),
        breaker: BreakerSettings::from_options(query.breaker_failures, query.breaker_cooldown_s)?,
    })
}

/// How a deploy asks to take over, checked.
fn rollout_plan(query: &DeployQuery, monitor: &MonitorSettings) -> Result<RolloutPlan, ApiError> {
    let canary_only = query.canary_percent.is_some() || query.canary_for_s.is_some();
    let mode = query.rollout.as_deref().unwrap_or(if canary_only { "canary" } else { "watch" });
    if mode != "canary" && canary_only {
        return Err(ApiError::BadRequest("canary_percent and canary_for_s need rollout=canary".to_owned()));
    }
    if mode != "watch" && query.watch_s.is_some() {
        return Err(ApiError::BadRequest("watch_s needs rollout=watch".to_owned()));
    }
    let watch = query.watch_s.map_or(monitor.watch, Duration::from_secs);
    match mode {
        "direct" => Ok(RolloutPlan::Direct),
        "watch" if !monitor.enabled || watch.is_zero() => Ok(RolloutPlan::Direct),
        "watch" => Ok(RolloutPlan::Watch(watch)),
        "canary" if !monitor.enabled => Err(ApiError::BadRequest(
            "rollout=canary needs the monitor, which this server runs without (monitor.enabled = false)".to_owned(),
        )),
        "canary" => {
            let percent = query.canary_percent.unwrap_or(10);
            let percent = u8::try_from(percent).ok().filter(|p| (1..=99).contains(p)).ok_or_else(|| {
                ApiError::BadRequest(format!("canary_percent must be between 1 and 99, got {percent}"))
            })?;
            let duration = Duration::from_secs(query.canary_for_s.unwrap_or(120).max(1));
            Ok(RolloutPlan::Canary { percent, duration })
        }
        other => Err(ApiError::BadRequest(format!("rollout must be watch, canary or direct, got `{other}`"))),
    }
}

/// A live version as the API shows it: its limits are the ones it runs under.
fn version_of(version: &Version) -> Result<FunctionVersion, ApiError> {
    let limits = api::FunctionLimits {
        memory_mb: u64::from(version.limits.memory_mb),
        timeout_ms: version.limits.timeout_ms,
        max_concurrency: u64::from(version.limits.max_concurrency),
    };
    Ok(FunctionVersion { limits, ..record_of(&version.record)? })
}

/// A stored version as the API shows it.
fn record_of(record: &VersionRecord) -> Result<FunctionVersion, ApiError> {
    let kind = api::FunctionKind::parse(&record.kind).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "version {} of `{}` has an unknown kind `{}`",
            record.version,
            record.name,
            record.kind
        ))
    })?;
    let list = |names: &str| names.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    let limit = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(FunctionVersion {
        tenant: record.tenant.clone(),
        name: record.name.clone(),
        version: record.version,
        digest: record.digest.clone(),
        kind,
        size_bytes: record.size_bytes,
        public: record.public,
        allowed_hosts: list(&record.allowed_hosts),
        models: record.models.as_deref().map(list),
        created_at_ms: record.created_at_ms,
        limits: api::FunctionLimits {
            memory_mb: limit(record.memory_mb),
            timeout_ms: limit(record.timeout_ms),
            max_concurrency: limit(record.max_concurrency),
        },
        breaker: BreakerSettings::of_record(record)
            .map(|b| api::BreakerOptions { failures: b.failures, cooldown_s: b.cooldown_s() }),
    })
}
