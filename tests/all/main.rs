//! Integration tests: each starts the real `muon` binary and talks HTTP to it.

// A test that unwraps fails with the line and the value, which is all its
// reader needs; the workspace's deny is for the code that serves.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed unwrap in a test is a failed test")]

/// Runs each named `async fn(Backend)` as two tests, on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() -> anyhow::Result<()> {
                    super::$name(muon_tests::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() -> anyhow::Result<()> {
                    super::$name(muon_tests::Backend::Postgres).await
                }
            }
        )*
    };
}

mod admin;
mod alerts;
mod anonymous;
mod billing;
mod bodies;
mod breaker;
mod catalog;
mod cli;
mod datasets;
mod deploy;
mod framing;
mod hygiene;
mod invoke;
mod jobs;
mod monitor;
mod monitor_models;
mod nn;
mod nn_batch;
mod nn_limits;
mod observability;
mod openapi;
mod outbound;
mod persistence;
mod routes;
mod sandbox;
mod scaling;
mod soak;
mod spin_sdk;
mod storage;
mod streaming;
mod tenants;
mod train_graph;
mod ui;
mod wire;
