//! Measuring what a request uses: guest CPU time, memory over time, bytes.
//!
//! CPU time is the thread CPU clock read around each poll of the guest's
//! future, so it counts only time spent running the guest (and its host
//! calls), not time it waited. That is two clock reads per poll; a `hello`
//! request is polled once or twice.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// CPU time used by the current thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a
    // constant the kernel always supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Wraps a future and adds the CPU time of each of its polls to a counter
/// (nanoseconds), shared so the owner can read it after the future is gone.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    total_ns: Arc<AtomicU64>,
}

impl<F: Future> CpuTimed<F> {
    /// Times `inner`, adding to `total_ns`.
    pub fn new(inner: F, total_ns: Arc<AtomicU64>) -> Self {
        Self { inner: Box::pin(inner), total_ns }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu_time();
        let result = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(before);
        self.total_ns.fetch_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        result
    }
}

/// Linear memory of one instance over time.
#[derive(Debug, Clone, Copy)]
pub struct MemoryMeter {
    current: usize,
    peak: usize,
    changed: Instant,
    /// Bytes integrated over microseconds until `changed`.
    byte_us: u128,
}

impl MemoryMeter {
    /// An instance with no memory yet.
    pub fn new() -> Self {
        Self { current: 0, peak: 0, changed: Instant::now(), byte_us: 0 }
    }

    /// Memory is now `size` bytes.
    pub fn resize(&mut self, size: usize) {
        let now = Instant::now();
        self.byte_us += self.current as u128 * now.duration_since(self.changed).as_micros();
        self.current = size;
        self.peak = self.peak.max(size);
        self.changed = now;
    }

    /// The largest size seen, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Memory integrated over time until now, in byte-milliseconds.
    pub fn byte_ms(&self) -> u128 {
        let tail = self.current as u128 * self.changed.elapsed().as_micros();
        (self.byte_us + tail) / 1000
    }
}

impl Default for MemoryMeter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_time_integrates_size_over_time() {
        let mut meter = MemoryMeter::new();
        meter.resize(1000);
        std::thread::sleep(Duration::from_millis(20));
        meter.resize(3000);
        assert_eq!(meter.peak(), 3000);
        assert!(meter.byte_ms() >= 20 * 1000, "{}", meter.byte_ms());
    }

    #[tokio::test]
    async fn cpu_time_counts_work_not_waiting() {
        let idle = Arc::new(AtomicU64::new(0));
        CpuTimed::new(tokio::time::sleep(Duration::from_millis(50)), Arc::clone(&idle)).await;
        assert!(idle.load(Ordering::Relaxed) < 20_000_000, "sleeping used {idle:?}");
        let busy = Arc::new(AtomicU64::new(0));
        let spin = async {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {}
        };
        CpuTimed::new(spin, Arc::clone(&busy)).await;
        assert!(busy.load(Ordering::Relaxed) >= 20_000_000, "spinning used {busy:?}");
    }
}

/// What one invocation used, as far as the guest is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measurement {
    pub cpu: Duration,
    pub peak_memory_bytes: usize,
    pub memory_byte_ms: u128,
}
