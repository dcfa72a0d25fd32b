//! Operations in the database: alerts, the audit log, alert sinks, guarded
//! rollouts and detector thresholds.
//!
//! An alert's `fingerprint` (its labels, as text) is unique among firing
//! alerts, so two nodes that see the same condition fire it once. A rollout
//! row exists while a deploy is guarded; whichever node ends it (promotion
//! or rollback) deletes the row in the transaction that applies the
//! decision, and a node that finds the row gone has nothing left to do.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Db;

/// An alert's row.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Its id.
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// Its labels as text: one firing alert per fingerprint.
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// When it fired.
    pub starts_at_ms: i64,
    /// When it was resolved.
    pub ends_at_ms: Option<i64>,
    /// Its labels as JSON.
    pub labels: String,
    /// The value seen.
    pub value: f64,
    /// The baseline it was compared with.
    pub baseline: f64,
    /// One line for a person.
    pub summary: String,
}

/// An entry to append to the audit log.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    /// The tenant it concerns.
    pub tenant: &'a str,
    /// `deploy`, `rollback`, `promotion`...
    pub kind: &'a str,
    /// What it is about.
    pub subject: &'a str,
    /// One line for a person.
    pub message: &'a str,
    /// Details, as JSON.
    pub detail: serde_json::Value,
}

/// An entry of the audit log.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Its position.
    pub id: i64,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// Its kind.
    pub kind: String,
    /// What it is about.
    pub subject: String,
    /// One line for a person.
    pub message: String,
    /// Details, as JSON text.
    pub detail: String,
}

/// A registered alert sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRow {
    /// The owning tenant.
    pub tenant: String,
    /// Its name.
    pub name: String,
    /// Where alerts are posted.
    pub url: String,
    /// The HMAC key.
    pub secret: String,
    /// When it was registered.
    pub created_at_ms: i64,
    /// The last delivery's outcome.
    pub last_delivery: Option<String>,
}

/// A guarded rollout in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    /// The owning tenant.
    pub tenant: String,
    /// The function.
    pub name: String,
    /// The version traffic goes back to on a regression.
    pub stable_version: i64,
    /// The version being judged (the active one).
    pub candidate_version: i64,
    /// The share of calls the candidate gets, 1..=100 (100: a watched deploy).
    pub percent: i64,
    /// When it started.
    pub started_at_ms: i64,
    /// When, with no regression found, the candidate is promoted.
    pub until_ms: i64,
}

impl Db {
    /// Fires an alert, unless one with its fingerprint is firing already;
    /// returns whether this call fired it.
    pub async fn fire_alert(&self, alert: &AlertRow) -> anyhow::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO alerts (id, tenant, fingerprint, state, starts_at_ms, ends_at_ms, labels, value, baseline, summary)
             VALUES ($1, $2, $3, 'firing', $4, NULL, $5, $6, $7, $8)
             ON CONFLICT (fingerprint) WHERE state = 'firing' DO NOTHING",
        )
        .bind(&alert.id)
        .bind(&alert.tenant)
        .bind(&alert.fingerprint)
        .bind(alert.starts_at_ms)
        .bind(&alert.labels)
        .bind(alert.value)
        .bind(alert.baseline)
        .bind(&alert.summary)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Resolves the firing alert with `fingerprint`; returns it if this call resolved it.
    pub async fn resolve_alert(&self, fingerprint: &str, now_ms: i64) -> anyhow::Result<Option<AlertRow>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT * FROM alerts WHERE fingerprint = $1 AND state = 'firing'")
            .bind(fingerprint)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut alert = alert_from_row(&row)?;
        let updated =
            sqlx::query("UPDATE alerts SET state = 'resolved', ends_at_ms = $2 WHERE id = $1 AND state = 'firing'")
                .bind(&alert.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        if updated == 0 {
            return Ok(None);
        }
        alert.state = "resolved".to_owned();
        alert.ends_at_ms = Some(now_ms);
        Ok(Some(alert))
    }

    /// A tenant's alerts, newest first, in `state` if given.
    pub async fn alerts(&self, tenant: &str, state: Option<&str>, limit: i64) -> anyhow::Result<Vec<AlertRow>> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE tenant = $1 AND ($2 = '' OR state = $2)
             ORDER BY starts_at_ms DESC, id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(state.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Every firing alert, of every tenant.
    pub async fn firing_alerts(&self) -> anyhow::Result<Vec<AlertRow>> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE state = 'firing' ORDER BY starts_at_ms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Appends to the audit log; returns the entry's id.
    pub async fn audit(&self, entry: NewAudit<'_>, at_ms: i64) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "INSERT INTO audit_events (tenant, at_ms, kind, subject, message, detail)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(entry.tenant)
        .bind(at_ms)
        .bind(entry.kind)
        .bind(entry.subject)
        .bind(entry.message)
        .bind(entry.detail.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// A tenant's audit log after `after`, oldest first, of `kind` if given.
    pub async fn audit_events(
        &self,
        tenant: &str,
        after: i64,
        kind: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant = $1 AND id > $2 AND ($3 = '' OR kind = $3)
             ORDER BY id LIMIT $4",
        )
        .bind(tenant)
        .bind(after)
        .bind(kind.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    kind: row.try_get("kind")?,
                    subject: row.try_get("subject")?,
                    message: row.try_get("message")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Registers (or replaces) a sink.
    pub async fn put_sink(&self, sink: &SinkRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO alert_sinks (tenant, name, url, secret, created_at_ms, last_delivery)
             VALUES ($1, $2, $3, $4, $5, NULL)
             ON CONFLICT (tenant, name) DO UPDATE SET url = excluded.url, secret = excluded.secret,
                created_at_ms = excluded.created_at_ms, last_delivery = NULL",
        )
        .bind(&sink.tenant)
        .bind(&sink.name)
        .bind(&sink.url)
        .bind(&sink.secret)
        .bind(sink.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A tenant's sinks, by name.
    pub async fn sinks(&self, tenant: &str) -> anyhow::Result<Vec<SinkRow>> {
        let rows = sqlx::query("SELECT * FROM alert_sinks WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(sink_from_row).collect()
    }

    /// Removes a sink; returns whether there was one.
    pub async fn delete_sink(&self, tenant: &str, name: &str) -> anyhow::Result<bool> {
        let deleted = sqlx::query("DELETE FROM alert_sinks WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Records how the last delivery to a sink went.
    pub async fn set_sink_delivery(&self, tenant: &str, name: &str, outcome: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE alert_sinks SET last_delivery = $3 WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .bind(outcome)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every rollout in progress.
    pub async fn rollouts(&self) -> anyhow::Result<Vec<RolloutRow>> {
        let rows = sqlx::query("SELECT * FROM rollouts ORDER BY tenant, name").fetch_all(&self.pool).await?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// The thresholds set for `function` of `tenant` (`""`: the tenant's own), as JSON.
    pub async fn thresholds(&self, tenant: &str, function: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT settings FROM thresholds WHERE tenant = $1 AND function = $2")
            .bind(tenant)
            .bind(function)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("settings")).transpose()?)
    }

    /// Every threshold setting: (tenant, function, JSON).
    pub async fn all_thresholds(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT * FROM thresholds").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get("tenant")?, row.try_get("function")?, row.try_get("settings")?)))
            .collect()
    }

    /// Sets the thresholds of `function` of `tenant` (`""`: the tenant's own).
    pub async fn set_thresholds(&self, tenant: &str, function: &str, settings: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO thresholds (tenant, function, settings) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, function) DO UPDATE SET settings = excluded.settings",
        )
        .bind(tenant)
        .bind(function)
        .bind(settings)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl super::CatalogChange {
    /// Starts (or replaces) the guarded rollout of a function.
    pub async fn start_rollout(&mut self, rollout: &RolloutRow) -> anyhow::Result<()> {
        self.end_rollout(&rollout.tenant, &rollout.name).await?;
        sqlx::query(
            "INSERT INTO rollouts (tenant, name, stable_version, candidate_version, percent, started_at_ms, until_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&rollout.tenant)
        .bind(&rollout.name)
        .bind(rollout.stable_version)
        .bind(rollout.candidate_version)
        .bind(rollout.percent)
        .bind(rollout.started_at_ms)
        .bind(rollout.until_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Ends a function's rollout, whatever its candidate; returns the row it ended.
    pub async fn end_rollout(&mut self, tenant: &str, name: &str) -> anyhow::Result<Option<RolloutRow>> {
        let row = sqlx::query("SELECT * FROM rollouts WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        sqlx::query("DELETE FROM rollouts WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        row.as_ref().map(rollout_from_row).transpose()
    }

    /// Ends the rollout of `candidate` if it is still in progress; returns
    /// whether this call ended it (another node may have first).
    pub async fn end_rollout_of(&mut self, tenant: &str, name: &str, candidate: i64) -> anyhow::Result<bool> {
        let deleted = sqlx::query("DELETE FROM rollouts WHERE tenant = $1 AND name = $2 AND candidate_version = $3")
            .bind(tenant)
            .bind(name)
            .bind(candidate)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }
}

fn alert_from_row(row: &AnyRow) -> anyhow::Result<AlertRow> {
    Ok(AlertRow {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        fingerprint: row.try_get("fingerprint")?,
        state: row.try_get("state")?,
        starts_at_ms: row.try_get("starts_at_ms")?,
        ends_at_ms: row.try_get("ends_at_ms")?,
        labels: row.try_get("labels")?,
        value: row.try_get("value")?,
        baseline: row.try_get("baseline")?,
        summary: row.try_get("summary")?,
    })
}

fn rollout_from_row(row: &AnyRow) -> anyhow::Result<RolloutRow> {
    Ok(RolloutRow {
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        stable_version: row.try_get("stable_version")?,
        candidate_version: row.try_get("candidate_version")?,
        percent: row.try_get("percent")?,
        started_at_ms: row.try_get("started_at_ms")?,
        until_ms: row.try_get("until_ms")?,
    })
}

fn sink_from_row(row: &AnyRow) -> anyhow::Result<SinkRow> {
    Ok(SinkRow {
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_delivery: row.try_get("last_delivery")?,
    })
}

/// Appends to the audit log inside `tx`, so that the entry commits with
/// the change it records, in the same order.
pub(super) async fn audit_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    entry: &NewAudit<'_>,
    at_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (tenant, at_ms, kind, subject, message, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.tenant)
    .bind(at_ms)
    .bind(entry.kind)
    .bind(entry.subject)
    .bind(entry.message)
    .bind(entry.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Db {
    /// Appends to the audit log, logging (not failing) when it cannot: the
    /// change the entry describes has happened either way.
    pub async fn audit_or_log(&self, entry: NewAudit<'_>) {
        let (kind, subject) = (entry.kind.to_owned(), entry.subject.to_owned());
        if let Err(err) = self.audit(entry, crate::clock::now_ms()).await {
            tracing::warn!(error = format!("{err:#}"), kind, subject, "cannot append to the audit log");
        }
    }
}
