//! `muon alerts ...` and `muon events ...`: a tenant's alerts, the sinks
//! they are posted to, and its audit log (followed live with `--follow`).

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;

use super::{ClientArgs, print_or, send};
use crate::api::{Alert, AlertList, AlertQuery, AlertState, AuditEvent, AuditEventList, AuditQuery, Deleted, Sink};
use crate::api::{SinkList, SinkRequest};

/// How often `muon events --follow` asks for newer events.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Failed polls in a row before `--follow` gives up.
const MAX_FAILED_POLLS: u32 = 30;

/// Events asked for per request.
const PAGE: u32 = 500;

/// The alert commands.
#[derive(Debug, Subcommand)]
pub(super) enum AlertsCommand {
    /// Register, list and delete the webhooks alerts are posted to.
    Sinks {
        #[command(subcommand)]
        command: SinksCommand,
    },
}

/// The sink commands.
#[derive(Debug, Subcommand)]
pub(super) enum SinksCommand {
    /// Register (or replace) sink NAME: alerts are POSTed to URL as
    /// Alertmanager's webhook payload, signed with SECRET.
    Put {
        name: String,
        /// An http or https URL.
        #[arg(long)]
        url: String,
        /// The key of the HMAC-SHA256 signature in `X-Muon-Signature`.
        #[arg(long, env = "MUON_SINK_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// List the sinks and how their last delivery went.
    List,
    /// Delete sink NAME.
    Delete { name: String },
}

/// Runs `muon alerts [--state S] [sinks ...]`.
pub(super) async fn alerts(
    command: Option<AlertsCommand>,
    state: Option<&str>,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let http = client.http()?;
    let sinks_url = |rest: &str| format!("{}/v1/alerts/sinks{rest}", client.server);
    match command {
        None => {
            let query = AlertQuery { state: state.map(alert_state).transpose()?, limit: None };
            let out: AlertList = send(http.get(format!("{}/v1/alerts", client.server)).query(&query)).await?;
            print_or(client, &out, || alerts_text(&out.alerts))
        }
        Some(AlertsCommand::Sinks { command }) => match command {
            SinksCommand::Put { name, url, secret } => {
                let request = http.put(sinks_url(&format!("/{name}"))).json(&SinkRequest { url, secret });
                let out: Sink = send(request).await?;
                print_or(client, &out, || format!("sink {} posts alerts to {}", out.name, out.url))
            }
            SinksCommand::List => {
                let out: SinkList = send(http.get(sinks_url(""))).await?;
                print_or(client, &out, || sinks_text(&out.sinks))
            }
            SinksCommand::Delete { name } => {
                let out: Deleted = send(http.delete(sinks_url(&format!("/{name}")))).await?;
                print_or(client, &out, || format!("deleted sink {}", out.deleted))
            }
        },
    }
}

fn alert_state(state: &str) -> anyhow::Result<AlertState> {
    match state {
        "firing" => Ok(AlertState::Firing),
        "resolved" => Ok(AlertState::Resolved),
        other => bail!("--state must be firing or resolved, not `{other}`"),
    }
}

/// Runs `muon events [--kind K] [--after N] [--follow]`: with `--follow`,
/// asks for newer events every second and prints them until interrupted;
/// with `--json`, one event per line.
pub(super) async fn events(
    kind: Option<String>,
    after: Option<i64>,
    follow: bool,
    client: &ClientArgs,
) -> anyhow::Result<()> {
    let http = client.http()?;
    let mut query = AuditQuery { after, limit: Some(PAGE), kind };
    let mut failed = 0;
    loop {
        let page: AuditEventList = match send(http.get(format!("{}/v1/events", client.server)).query(&query)).await {
            Ok(page) => page,
            // A server restarting is worth waiting for; anything else is said once.
            Err(err) if follow && is_unreachable(&err) && failed < MAX_FAILED_POLLS => {
                failed += 1;
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        failed = 0;
        let full = page.events.len() >= PAGE as usize;
        if !follow && !full && query.after == after {
            // One page, printed as the API's type.
            return print_or(client, &page, || events_text(&page.events));
        }
        for event in &page.events {
            if client.json {
                println!("{}", serde_json::to_string(event)?);
            } else {
                println!("{}", event_line(event));
            }
        }
        query.after = Some(page.next_after);
        if !full {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_connect))
}

fn alerts_text(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "no alerts".to_owned();
    }
    let mut lines = vec![format!("{:<24} {:<9} {:<24} {:<14} {}", "STARTED", "STATE", "ID", "DETECTOR", "SUMMARY")];
    for alert in alerts {
        lines.push(format!(
            "{:<24} {:<9} {:<24} {:<14} {}",
            crate::clock::rfc3339(alert.starts_at_ms),
            alert.state.as_str(),
            alert.id,
            alert.labels.detector,
            alert.summary
        ));
    }
    lines.join("\n")
}

fn sinks_text(sinks: &[Sink]) -> String {
    if sinks.is_empty() {
        return "no sinks".to_owned();
    }
    let mut lines = vec![format!("{:<24} {:<48} {}", "NAME", "URL", "LAST DELIVERY")];
    for sink in sinks {
        lines.push(format!("{:<24} {:<48} {}", sink.name, sink.url, sink.last_delivery.as_deref().unwrap_or("-")));
    }
    lines.join("\n")
}

fn events_text(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return "no events".to_owned();
    }
    events.iter().map(event_line).collect::<Vec<_>>().join("\n")
}

/// `12  2026-12-02T16:32:59.123Z  job_state  job-1a2b  job job-1a2b running`.
fn event_line(event: &AuditEvent) -> String {
    format!(
        "{:>6}  {}  {:<14} {:<24} {}",
        event.id,
        crate::clock::rfc3339(event.at_ms),
        event.kind,
        event.subject,
        event.message
    )
}
