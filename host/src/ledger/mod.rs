//! The billing ledger: every request's usage record is durable before its
//! response is sent.
//!
//! Requests hand their record to one writer task and wait. The writer takes
//! everything queued, writes it in one transaction (one sync), and answers
//! all of them: group commit, so many concurrent requests share one commit.
//! If the write fails, every waiting request fails with `503` instead of
//! running unbilled. A unique request id keeps a record from being written
//! twice.

pub mod pricing;
mod sqlite;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::{Db, UsageRecord};
use crate::error::ApiError;

/// Records written per transaction at most.
const MAX_BATCH: usize = 2048;
/// Records that may wait for the writer before requests are refused.
const QUEUE: usize = 65_536;
/// How long a request waits for its record to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

type Ack = oneshot::Sender<Result<(), String>>;
/// A record to write, or `None`: a barrier answered once everything before it is written.
type Entry = (Option<UsageRecord>, Ack);

/// Handle to the ledger writer.
#[derive(Clone)]
pub struct Ledger {
    sender: mpsc::Sender<Entry>,
}

impl Ledger {
    /// Starts the writer; it ends once every handle is dropped and the queue
    /// is drained. SQLite gets a dedicated thread, PostgreSQL a task.
    pub fn start(db: Db) -> anyhow::Result<Self> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        match db.sqlite_path() {
            Some(path) => {
                let writer = sqlite::SqliteWriter::open(path)?;
                std::thread::Builder::new()
                    .name("muon-ledger".into())
                    .spawn(move || sqlite_write_loop(writer, receiver))?;
            }
            None => {
                tokio::spawn(write_loop(db, receiver));
            }
        }
        Ok(Self { sender })
    }

    /// Writes `record` durably; returns once it is committed.
    pub async fn record(&self, record: UsageRecord) -> Result<(), ApiError> {
        self.send(Some(record)).await
    }

    /// Returns once every record handed in before is written.
    pub async fn flush(&self) -> Result<(), ApiError> {
        self.send(None).await
    }

    async fn send(&self, entry: Option<UsageRecord>) -> Result<(), ApiError> {
        let (ack, done) = oneshot::channel();
        self.sender
            .try_send((entry, ack))
            .map_err(|_| ApiError::LedgerUnavailable("the ledger queue is full".to_owned()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, done).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(ApiError::LedgerUnavailable(message)),
            Ok(Err(_)) => Err(ApiError::LedgerUnavailable("the ledger writer stopped".to_owned())),
            Err(_) => Err(ApiError::LedgerUnavailable("the write did not finish in time".to_owned())),
        }
    }
}

fn sqlite_write_loop(mut writer: sqlite::SqliteWriter, mut receiver: mpsc::Receiver<Entry>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let (records, acks): (Vec<Option<UsageRecord>>, Vec<Ack>) = batch.into_iter().unzip();
        let records: Vec<UsageRecord> = records.into_iter().flatten().collect();
        let started = std::time::Instant::now();
        let result = if records.is_empty() { Ok(()) } else { writer.write(&records) };
        let result = result.map_err(|err| {
            tracing::error!(error = %err, records = records.len(), "cannot write usage records");
            err.to_string()
        });
        record_batch(records.len(), started);
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}

fn record_batch(records: usize, started: std::time::Instant) {
    metrics::histogram!("muon_ledger_batch_size").record(records as f64);
    metrics::histogram!("muon_ledger_write_seconds").record(started.elapsed().as_secs_f64());
}

async fn write_loop(db: Db, mut receiver: mpsc::Receiver<Entry>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, acks): (Vec<Option<UsageRecord>>, Vec<Ack>) = batch.drain(..).unzip();
        let records: Vec<UsageRecord> = records.into_iter().flatten().collect();
        if records.is_empty() {
            acks.into_iter().for_each(|ack| drop(ack.send(Ok(()))));
            continue;
        }
        let started = std::time::Instant::now();
        let result = db.insert_usage(&records).await.map_err(|err| {
            tracing::error!(error = format!("{err:#}"), records = records.len(), "cannot write usage records");
            format!("{err:#}")
        });
        record_batch(records.len(), started);
        for ack in acks {
            let _ = ack.send(result.clone());
        }
    }
}
