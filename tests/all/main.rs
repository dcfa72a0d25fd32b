//! Integration tests: each starts the real `muon` binary and talks HTTP to it.

mod cli;
mod deploy;
mod hygiene;
mod invoke;
mod observability;
mod outbound;
mod persistence;
mod sandbox;
mod scaling;
