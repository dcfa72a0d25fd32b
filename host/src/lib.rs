//! muon: a serverless WebAssembly function host for AI workloads.
//!
//! The request path, top to bottom: [`server`] accepts and routes,
//! [`registry`] finds the function's live version and admits the request,
//! [`invoke`] runs it in a fresh instance made by [`engine`], and errors
//! become responses in [`error`]. [`nn`] serves wasi-nn inference on
//! tenants' models; [`metering`] and [`ledger`] bill every request.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod files;
pub mod invoke;
pub mod ledger;
pub mod metering;
pub mod nn;
pub mod registry;
pub mod server;
pub mod telemetry;
pub mod tenancy;
