//! Guarded rollouts: while one is in progress the new version (the
//! candidate, which is the active version in the catalog) takes a share of
//! a function's calls and the version before it (the stable one) the rest.
//! The monitor judges the candidate and ends the rollout: a promotion keeps
//! it, a rollback makes the stable version active again. A watched deploy
//! is a rollout at 100%: judged against the stable version's recent past.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Version;
use crate::db::RolloutRow;

/// How a deploy is guarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RolloutPlan {
    /// Not at all: the new version takes every call, unwatched.
    #[default]
    Direct,
    /// The new version takes every call and is watched for this long.
    Watch(Duration),
    /// The new version takes `percent` of the calls for `duration`.
    Canary {
        /// Its share of the calls, 1..=99.
        percent: u8,
        /// How long until it is promoted, if nothing regresses.
        duration: Duration,
    },
}

impl RolloutPlan {
    /// The share of calls the candidate takes, and how long the rollout lasts.
    pub(super) fn share_and_duration(self) -> Option<(u8, Duration)> {
        match self {
            Self::Direct => None,
            Self::Watch(duration) => Some((100, duration)),
            Self::Canary { percent, duration } => Some((percent, duration)),
        }
    }
}

/// A rollout in progress, as this node routes it.
pub struct Rollout {
    /// The rollout as stored.
    pub row: RolloutRow,
    /// The version the calls the candidate does not take go to.
    pub stable: Arc<Version>,
    /// Counts calls, so that the candidate takes exactly its share.
    calls: AtomicU64,
}

impl Rollout {
    pub(super) fn new(row: RolloutRow, stable: Arc<Version>) -> Self {
        Self { row, stable, calls: AtomicU64::new(0) }
    }

    /// Whether this rollout only watches (the candidate takes every call).
    pub fn is_watch(&self) -> bool {
        self.row.percent >= 100
    }

    /// Picks the version for the next call: `candidate` for its share, the
    /// stable version otherwise. The share is spread evenly over the calls
    /// rather than drawn at random, so a small sample already has it.
    pub(super) fn pick(&self, candidate: Arc<Version>) -> Arc<Version> {
        if self.is_watch() || candidate.record.version != self.row.candidate_version {
            return candidate;
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let percent = u64::try_from(self.row.percent).unwrap_or(0);
        // Call n goes to the candidate when the running share would fall short.
        if (call + 1) * percent / 100 > call * percent / 100 { candidate } else { Arc::clone(&self.stable) }
    }
}

/// How the monitor ends a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The candidate stays.
    Promote,
    /// The stable version comes back.
    RollBack,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_share_is_exact_over_every_hundred_calls() {
        for percent in [1_u64, 10, 33, 50, 99] {
            let taken = (0..1000_u64).filter(|call| (call + 1) * percent / 100 > call * percent / 100).count();
            assert_eq!(taken as u64, percent * 10, "{percent}%");
        }
    }
}
