//! A function's circuit breaker (opt-in with `breaker_failures`): after that
//! many host-side failures in a row, calls are refused with `503
//! circuit_open` for a cool-down instead of running a guest that keeps
//! failing; then one call at a time is let through (half-open), and its
//! outcome closes the breaker or opens it for another cool-down.
//!
//! What counts as a failure is decided from the error code ([`Verdict::of`]):
//! the function failed (trap, timeout, memory limit, an invalid or oversized
//! response, a host error running it). What the caller or the platform
//! caused (a bad request, a typed function's own error, a quota, a full
//! queue, an unwritable ledger) counts neither way. An HTTP function that
//! answers `500` itself answered: that is a success here.
//!
//! The state is per node and in memory; versions of a function share one
//! breaker while its settings are unchanged, like [`super::Admission`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::RegistryError;
use crate::api::ErrorCode;
use crate::db::VersionRecord;

/// The cool-down of a breaker that names none.
pub const DEFAULT_COOLDOWN_S: u32 = 30;
/// The longest cool-down a deploy may ask for (a day).
pub const MAX_COOLDOWN_S: u32 = 86_400;
/// The most consecutive failures a deploy may ask for before the breaker opens.
pub const MAX_FAILURES: u32 = 10_000;
/// What a caller refused while the single half-open call runs is told to wait.
const PROBE_RETRY_S: u32 = 1;

/// A breaker's settings, as a deploy gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive host-side failures that open it.
    pub failures: u32,
    /// How long it stays open before it lets one call through.
    pub cooldown: Duration,
}

impl BreakerSettings {
    /// The settings a deploy asks for with `breaker_failures` and
    /// `breaker_cooldown_s`, checked; `None` without `breaker_failures`.
    pub fn from_options(failures: Option<u64>, cooldown_s: Option<u64>) -> Result<Option<Self>, RegistryError> {
        let Some(failures) = failures else {
            return match cooldown_s {
                Some(_) => Err(RegistryError::BadOption(
                    "breaker_cooldown_s needs breaker_failures (the failures in a row that open the breaker)"
                        .to_owned(),
                )),
                None => Ok(None),
            };
        };
        let cooldown_s = cooldown_s.unwrap_or(u64::from(DEFAULT_COOLDOWN_S));
        let outside = |what: &str, asked: u64, cap: u32| {
            RegistryError::BadOption(format!("{what}={asked} is outside the allowed range 1..={cap}"))
        };
        if failures == 0 || failures > u64::from(MAX_FAILURES) {
            return Err(outside("breaker_failures", failures, MAX_FAILURES));
        }
        if cooldown_s == 0 || cooldown_s > u64::from(MAX_COOLDOWN_S) {
            return Err(outside("breaker_cooldown_s", cooldown_s, MAX_COOLDOWN_S));
        }
        Ok(Some(Self {
            failures: u32::try_from(failures).unwrap_or(MAX_FAILURES),
            cooldown: Duration::from_secs(cooldown_s),
        }))
    }

    /// The settings a stored version carries, if it has a breaker.
    pub fn of_record(record: &VersionRecord) -> Option<Self> {
        let failures = u32::try_from(record.breaker_failures).ok().filter(|&n| n > 0)?;
        let cooldown_s = u64::try_from(record.breaker_cooldown_s).unwrap_or(0).max(1);
        Some(Self { failures, cooldown: Duration::from_secs(cooldown_s) })
    }

    /// The cool-down in whole seconds, as stored and shown.
    pub fn cooldown_s(&self) -> u64 {
        self.cooldown.as_secs()
    }
}

/// The breaker is open: the call was refused without running.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the function failed {failures} times in a row, so its circuit breaker is open; \
     retry after {retry_after_s} s (fix the function, or redeploy without `breaker_failures`)"
)]
pub struct CircuitOpen {
    /// The failures in a row that opened it.
    pub failures: u32,
    /// When a call may be let through again, in seconds.
    pub retry_after_s: u32,
}

/// How a call that the breaker let through ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The function ran and answered.
    Success,
    /// The function failed on the host's side of the line.
    Failure,
    /// Neither: the caller or the platform stopped it (counts for nothing).
    Neutral,
}

impl Verdict {
    /// The verdict on a call that ended with `code` (`None`: it succeeded).
    pub fn of(code: Option<ErrorCode>) -> Self {
        match code {
            None => Self::Success,
            Some(
                ErrorCode::Trap
                | ErrorCode::Timeout
                | ErrorCode::MemoryLimit
                | ErrorCode::InvalidResponse
                | ErrorCode::ResponseTooLarge
                | ErrorCode::Internal,
            ) => Self::Failure,
            Some(_) => Self::Neutral,
        }
    }
}

/// A change of state worth an audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed to open: calls are refused from now on.
    Opened,
    /// A half-open call succeeded: calls run again.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls run; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls are refused until `until`.
    Open { until: Instant },
    /// One call (`probing`) is let through to decide.
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped at every change of state, so that a call admitted before one
    /// (say, still running when the breaker opened) counts for nothing after.
    epoch: u64,
}

/// The circuit breaker of one function.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// A call the breaker let through. Report its outcome with
/// [`Ticket::report`]; dropped unreported (the caller went away), it counts
/// for nothing and frees the half-open slot.
#[must_use = "report the call's outcome"]
pub struct Ticket {
    breaker: Arc<Breaker>,
    epoch: u64,
    probe: bool,
    reported: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self { settings, inner: Mutex::new(Inner { state: State::Closed { failures: 0 }, epoch: 0 }) }
    }

    /// Its settings.
    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Whether calls are being refused now (open, or half-open with its one call running).
    pub fn is_open(&self) -> bool {
        !matches!(self.lock().state, State::Closed { .. })
    }

    /// Lets a call through, or refuses it while the breaker is open.
    pub fn admit(self: &Arc<Self>) -> Result<Ticket, CircuitOpen> {
        self.admit_at(Instant::now())
    }

    fn admit_at(self: &Arc<Self>, now: Instant) -> Result<Ticket, CircuitOpen> {
        let mut inner = self.lock();
        let refused = |retry_after_s| CircuitOpen { failures: self.settings.failures, retry_after_s };
        let probe = match inner.state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => {
                let left = until.duration_since(now).as_secs_f64().ceil();
                return Err(refused((left as u32).max(1)));
            }
            State::Open { .. } | State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => return Err(refused(PROBE_RETRY_S)),
        };
        Ok(Ticket { breaker: Arc::clone(self), epoch: inner.epoch, probe, reported: false })
    }

    fn settle(&self, ticket: &Ticket, verdict: Verdict, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        if inner.epoch != ticket.epoch {
            return None;
        }
        let (state, transition) = match (inner.state, verdict) {
            (State::Closed { .. }, Verdict::Success) => (State::Closed { failures: 0 }, None),
            (State::Closed { failures }, Verdict::Failure) if failures + 1 >= self.settings.failures => {
                (State::Open { until: now + self.settings.cooldown }, Some(Transition::Opened))
            }
            (State::Closed { failures }, Verdict::Failure) => (State::Closed { failures: failures + 1 }, None),
            (State::HalfOpen { .. }, Verdict::Success) if ticket.probe => {
                (State::Closed { failures: 0 }, Some(Transition::Closed))
            }
            // Open again for another cool-down: still open, so no new transition.
            (State::HalfOpen { .. }, Verdict::Failure) if ticket.probe => {
                (State::Open { until: now + self.settings.cooldown }, None)
            }
            (State::HalfOpen { .. }, Verdict::Neutral) if ticket.probe => (State::HalfOpen { probing: false }, None),
            (state, _) => (state, None),
        };
        if state != inner.state && !matches!((inner.state, state), (State::Closed { .. }, State::Closed { .. })) {
            inner.epoch += 1;
        }
        inner.state = state;
        transition
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few words written whole: a panic elsewhere cannot leave it torn.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Ticket {
    /// Counts the call's outcome; returns the transition it caused, if any.
    pub fn report(self, verdict: Verdict) -> Option<Transition> {
        self.report_at(verdict, Instant::now())
    }

    fn report_at(mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
        self.reported = true;
        self.breaker.settle(&self, verdict, now)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.settle(self, Verdict::Neutral, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_s: u64) -> Arc<Breaker> {
        Arc::new(Breaker::new(BreakerSettings { failures, cooldown: Duration::from_secs(cooldown_s) }))
    }

    fn call(breaker: &Arc<Breaker>, at: Instant, verdict: Verdict) -> Result<Option<Transition>, CircuitOpen> {
        Ok(breaker.admit_at(at)?.report_at(verdict, at))
    }

    #[test]
    fn opens_after_n_failures_in_a_row_and_refuses_for_the_cooldown() {
        let b = breaker(3, 10);
        let t0 = Instant::now();
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(None));
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(None));
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(Some(Transition::Opened)));
        assert!(b.is_open());
        let refused = call(&b, t0 + Duration::from_millis(2500), Verdict::Success).err();
        assert_eq!(refused.map(|r| r.retry_after_s), Some(8), "what is left of the cool-down, rounded up");
    }

    #[test]
    fn a_success_or_a_neutral_call_in_between_keeps_it_closed() {
        let b = breaker(2, 10);
        let t0 = Instant::now();
        for verdict in [Verdict::Failure, Verdict::Success, Verdict::Failure, Verdict::Neutral] {
            assert_eq!(call(&b, t0, verdict).ok(), Some(None));
        }
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(Some(Transition::Opened)), "neutral does not reset");
    }

    #[test]
    fn after_the_cooldown_one_call_at_a_time_decides() {
        let b = breaker(1, 1);
        let t0 = Instant::now();
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(Some(Transition::Opened)));
        let later = t0 + Duration::from_secs(1);
        let probe = b.admit_at(later);
        assert!(probe.is_ok());
        assert_eq!(b.admit_at(later).err().map(|r| r.retry_after_s), Some(PROBE_RETRY_S), "one at a time");
        // The probe fails: open for another cool-down.
        assert_eq!(probe.ok().and_then(|p| p.report_at(Verdict::Failure, later)), None);
        assert!(b.admit_at(later + Duration::from_millis(500)).is_err());
        let again = later + Duration::from_secs(2);
        assert_eq!(call(&b, again, Verdict::Success).ok(), Some(Some(Transition::Closed)));
        assert!(!b.is_open());
        assert!(b.admit_at(again).is_ok());
    }

    #[test]
    fn a_probe_dropped_unreported_frees_the_slot() {
        let b = breaker(1, 0);
        let t0 = Instant::now();
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(Some(Transition::Opened)));
        drop(b.admit_at(t0));
        assert!(b.admit_at(t0).is_ok(), "the next call probes");
    }

    #[test]
    fn calls_admitted_before_a_change_count_for_nothing_after_it() {
        let b = breaker(1, 60);
        let t0 = Instant::now();
        let slow = b.admit_at(t0);
        assert_eq!(call(&b, t0, Verdict::Failure).ok(), Some(Some(Transition::Opened)));
        assert_eq!(slow.ok().and_then(|s| s.report_at(Verdict::Success, t0)), None);
        assert!(b.is_open(), "a success that started before the breaker opened does not close it");
    }

    #[test]
    fn options_are_checked() {
        let settings = BreakerSettings::from_options(Some(3), None).ok().flatten();
        assert_eq!(settings.map(|s| (s.failures, s.cooldown_s())), Some((3, u64::from(DEFAULT_COOLDOWN_S))));
        assert!(matches!(BreakerSettings::from_options(None, None), Ok(None)));
        for (failures, cooldown) in [(None, Some(5)), (Some(0), None), (Some(3), Some(0)), (Some(3), Some(86_401))] {
            assert!(BreakerSettings::from_options(failures, cooldown).is_err(), "{failures:?} {cooldown:?}");
        }
    }

    #[test]
    fn host_side_failures_count_and_the_callers_own_do_not() {
        for code in [ErrorCode::Trap, ErrorCode::Timeout, ErrorCode::MemoryLimit, ErrorCode::Internal] {
            assert_eq!(Verdict::of(Some(code)), Verdict::Failure, "{code}");
        }
        for code in [ErrorCode::BadRequest, ErrorCode::FunctionError, ErrorCode::QuotaExceeded, ErrorCode::Overloaded] {
            assert_eq!(Verdict::of(Some(code)), Verdict::Neutral, "{code}");
        }
        assert_eq!(Verdict::of(None), Verdict::Success);
    }
}
