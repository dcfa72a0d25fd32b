//! `/readyz`: whether this node takes work, and what is degraded.
//!
//! Shutting down or a database that does not answer makes the node
//! `unavailable` (`503`: a load balancer sends work elsewhere). The rest
//! only makes it `degraded` (`200`: it still serves): the ledger's writer
//! behind, models that cannot be loaded, sinks failing, circuit breakers
//! open. The probe needs no key; the names of what is degraded are another
//! tenant's business, so only an admin key sees them.

use http::StatusCode;

use super::App;
use super::body::{self, Body};
use crate::api::{Check, ErrorCode, ErrorDetail, Readiness, ReadyChecks, ReadyStatus};

/// `GET /readyz`.
pub async fn readyz(app: &App, headers: &http::HeaderMap) -> http::Response<Body> {
    let database = app.registry.ready().await;
    // Only with a database: a key is checked against it (or its cache).
    let admin = database
        && headers.contains_key(http::header::AUTHORIZATION)
        && app.auth.authenticate(headers).await.is_ok_and(|principal| principal.admin);
    let accepting = passed_or(app.is_ready(), "muon is shutting down");
    readiness(checks(app, accepting, passed_or(database, "the database does not answer"), admin))
}

/// `GET /readyz` on a connection accepted after the shutdown signal: no
/// database call and no key check, only what is at hand.
pub fn readyz_while_stopping(app: &App) -> http::Response<Body> {
    let accepting = passed_or(false, "muon is shutting down; send the request to another node");
    let database = Check { ok: true, message: Some("not checked while shutting down".to_owned()), ..passed() };
    readiness(checks(app, accepting, database, false))
}

fn checks(app: &App, accepting: Check, database: Check, admin: bool) -> ReadyChecks {
    let shown = |names: Vec<String>| if admin { names } else { Vec::new() };
    ReadyChecks {
        accepting,
        database,
        ledger: ledger_check(app),
        models: counted(app.models.unloadable(), "models cannot be loaded", shown),
        sinks: counted(app.monitor.sinks().failing(), "alert sinks are failing", shown),
        breakers: counted(app.registry.open_breakers(), "functions have an open circuit breaker", shown),
    }
}

/// The answer for `checks`: `503` with an error when a check of the first
/// kind failed, else `200`, `degraded` if any other did.
pub fn readiness(checks: ReadyChecks) -> http::Response<Body> {
    let unavailable = [&checks.accepting, &checks.database].into_iter().find(|c| !c.ok);
    let degraded = [&checks.ledger, &checks.models, &checks.sinks, &checks.breakers].into_iter().any(|c| !c.ok);
    let (status, ready, error) = match unavailable {
        Some(check) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyStatus::Unavailable,
            Some(ErrorDetail {
                code: ErrorCode::Unavailable,
                message: check.message.clone().unwrap_or_else(|| "muon is unavailable".to_owned()),
            }),
        ),
        None if degraded => (StatusCode::OK, ReadyStatus::Degraded, None),
        None => (StatusCode::OK, ReadyStatus::Ok, None),
    };
    body::json_response(status, &Readiness { status: ready, checks, error })
}

fn passed() -> Check {
    Check { ok: true, message: None, count: None, names: Vec::new() }
}

fn passed_or(ok: bool, message: &str) -> Check {
    Check { ok, message: (!ok).then(|| message.to_owned()), count: None, names: Vec::new() }
}

/// A check failed by each of `names`.
fn counted(names: Vec<String>, what: &str, shown: impl Fn(Vec<String>) -> Vec<String>) -> Check {
    let count = names.len() as u64;
    Check {
        ok: count == 0,
        message: (count > 0).then(|| format!("{count} {what}")),
        count: Some(count),
        names: shown(names),
    }
}

fn ledger_check(app: &App) -> Check {
    let Some(lag) = app.settler.ledger().map(crate::ledger::Ledger::lag) else {
        return passed();
    };
    let message = lag.behind.then(|| match lag.oldest {
        Some(age) => format!(
            "{} usage records wait for the database, the oldest for {:.1} s; requests fail once it is too old",
            lag.waiting,
            age.as_secs_f64()
        ),
        None => format!("{} usage records wait for the database writer", lag.waiting),
    });
    Check { ok: !lag.behind, message, count: Some(lag.waiting as u64), names: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_passed() -> ReadyChecks {
        ReadyChecks {
            accepting: passed(),
            database: passed(),
            ledger: passed(),
            models: passed(),
            sinks: passed(),
            breakers: passed(),
        }
    }

    async fn answer(checks: ReadyChecks) -> (StatusCode, Readiness) {
        use http_body_util::BodyExt;
        let response = readiness(checks);
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let parsed: Result<Readiness, _> = serde_json::from_slice(&bytes);
        assert!(parsed.is_ok(), "not a Readiness: {bytes:?}");
        let unreadable = || Readiness { status: ReadyStatus::Unavailable, checks: all_passed(), error: None };
        (status, parsed.unwrap_or_else(|_| unreadable()))
    }

    #[tokio::test]
    async fn a_failed_check_degrades_or_makes_the_node_unavailable() {
        let (status, ok) = answer(all_passed()).await;
        assert_eq!((status, ok.status, ok.error), (StatusCode::OK, ReadyStatus::Ok, None));

        let mut checks = all_passed();
        checks.sinks = counted(vec!["acme/pager".to_owned()], "alert sinks are failing", |names| names);
        let (status, degraded) = answer(checks.clone()).await;
        assert_eq!((status, degraded.status), (StatusCode::OK, ReadyStatus::Degraded));
        assert_eq!(degraded.checks.sinks.message.as_deref(), Some("1 alert sinks are failing"));

        checks.database = passed_or(false, "the database does not answer");
        let (status, unavailable) = answer(checks).await;
        assert_eq!((status, unavailable.status), (StatusCode::SERVICE_UNAVAILABLE, ReadyStatus::Unavailable));
        let error = unavailable.error.map(|e| (e.code, e.message));
        assert_eq!(error, Some((ErrorCode::Unavailable, "the database does not answer".to_owned())));
        assert!(!unavailable.checks.sinks.ok, "the other checks are still reported");
    }
}
