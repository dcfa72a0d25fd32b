//! muon: a serverless WebAssembly function host for AI workloads.
//!
//! Imports point down (see `docs/ARCHITECTURE.md`): [`server`] alone knows
//! HTTP; it parses a request, finds the function in [`registry`], runs it
//! through the one [`invoke::Invoker`] and meters it through the one
//! [`settle::Settler`]. [`engine`] builds the instances, [`nn`] serves
//! wasi-nn inference on tenants' models, [`ledger`] keeps usage durable, and
//! [`names`] and [`clock`] are leaves everyone may use.

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datasets;
pub mod db;
pub mod engine;
pub mod files;
pub mod invoke;
pub mod jobs;
pub mod ledger;
pub mod metering;
pub mod monitor;
pub mod names;
pub mod nn;
pub mod registry;
pub mod server;
pub mod settle;
pub mod stats;
pub mod telemetry;
pub mod tenancy;
