//! `/v1/tenants` and `/v1/keys`: tenants, their keys and quotas.

use super::App;
use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{self, NewKey, NewTenant, Revoked, Tenant, TenantCreated, TenantList, TenantQuotas};
use crate::auth::{IssuedKey, Principal};
use crate::clock::now_ms;
use crate::names::check_tenant_name;
use http::StatusCode;
use hyper::body::Incoming;

/// Largest JSON body the management API reads.
const MAX_JSON_BYTES: u64 = 64 * 1024;

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.admin { Ok(()) } else { Err(ApiError::Forbidden("this route needs an admin key".to_owned())) }
}

/// A tenant the caller may act for; another tenant's is `404`, as if absent.
pub(super) async fn visible_tenant(app: &App, principal: &Principal, tenant: &str) -> Result<(), ApiError> {
    if principal.can_access(tenant) && app.db.tenant_exists(tenant).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("tenant `{tenant}`")))
    }
}

/// A JSON body of at most `MAX_JSON_BYTES`; invalid JSON or an unknown field is `400`.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    request: http::Request<Incoming>,
) -> Result<T, ApiError> {
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))
}

/// `POST /v1/tenants` (admin): creates a tenant and returns its first key, once.
pub async fn create(
    app: &App,
    principal: &Principal,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, ApiError> {
    require_admin(principal)?;
    let new: NewTenant = read_json(app, request).await?;
    check_tenant_name(&new.name)?;
    if !app.db.insert_tenant(&new.name, now_ms()).await? {
        return Err(ApiError::Conflict(format!("tenant `{}`", new.name)));
    }
    if let Some(quotas) = new.quotas {
        app.tenancy.set_quotas(&new.name, quotas).await?;
    }
    let key = app.auth.issue(&new.name, false, app.tenancy.max_keys(&new.name).await?).await?;
    tracing::info!(tenant = %new.name, key_id = %key.id, "tenant created");
    Ok(body::json_response(StatusCode::CREATED, &TenantCreated { tenant: new.name, key: key_of(key) }))
}

/// `GET /v1/tenants` (admin).
pub async fn list(app: &App, principal: &Principal) -> Result<http::Response<Body>, ApiError> {
    require_admin(principal)?;
    let mut tenants = Vec::new();
    for tenant in app.db.tenants().await? {
        let quotas = app.tenancy.quotas(&tenant.name).await?;
        tenants.push(Tenant { name: tenant.name, created_at_ms: tenant.created_at_ms, quotas });
    }
    Ok(body::json_response(StatusCode::OK, &TenantList { tenants }))
}

/// `POST /v1/tenants/{tenant}/keys`: a new key for the caller's own tenant (or
/// any, for an admin); `{"admin": true}` asks for an admin key (admins only).
pub async fn issue_key(
    app: &App,
    principal: &Principal,
    tenant: &str,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, ApiError> {
    visible_tenant(app, principal, tenant).await?;
    let (parts, incoming) = request.into_parts();
    let bytes = app.bodies.read(&parts.headers, incoming, MAX_JSON_BYTES).await?;
    let new: NewKey = if bytes.is_empty() {
        NewKey::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))?
    };
    if new.admin {
        require_admin(principal)?;
    }
    let key = app.auth.issue(tenant, new.admin, app.tenancy.max_keys(tenant).await?).await?;
    tracing::info!(%tenant, key_id = %key.id, admin = new.admin, "key issued");
    Ok(body::json_response(StatusCode::CREATED, &key_of(key)))
}

/// `DELETE /v1/keys/{id}`.
pub async fn revoke_key(app: &App, principal: &Principal, id: &str) -> Result<http::Response<Body>, ApiError> {
    app.auth.revoke(principal, id).await?;
    tracing::info!(key_id = %id, "key revoked");
    Ok(body::json_response(StatusCode::OK, &Revoked { revoked: id.to_owned() }))
}

/// `PUT /v1/tenants/{tenant}/quotas` (admin): replaces the API layer of a tenant's quotas.
pub async fn set_quotas(
    app: &App,
    principal: &Principal,
    tenant: &str,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, ApiError> {
    require_admin(principal)?;
    let quotas: api::Quotas = read_json(app, request).await?;
    // New quotas reload the tenant's spend this month from the ledger.
    super::usage_api::flush_ledger(app).await?;
    let effective = app.tenancy.set_quotas(tenant, quotas).await?;
    Ok(body::json_response(StatusCode::OK, &TenantQuotas { tenant: tenant.to_owned(), quotas: effective }))
}

/// `GET /v1/tenants/{tenant}/quotas`: the effective quotas.
pub async fn quotas(app: &App, principal: &Principal, tenant: &str) -> Result<http::Response<Body>, ApiError> {
    visible_tenant(app, principal, tenant).await?;
    let quotas = app.tenancy.quotas(tenant).await?;
    Ok(body::json_response(StatusCode::OK, &TenantQuotas { tenant: tenant.to_owned(), quotas }))
}

fn key_of(key: IssuedKey) -> api::IssuedKey {
    api::IssuedKey { id: key.id, tenant: key.tenant, key: key.key }
}
