//! Measuring what a request uses: guest CPU time, memory over time, bytes.
//!
//! Guest CPU time is the time spent inside polls of the guest's future: the
//! guest runs only while polled, and everything that waits (sleeps, I/O,
//! inference on other threads) returns `Pending` instead of blocking, so time
//! in a poll is time on a CPU. It is read from the monotonic clock (vDSO, no
//! system call); the thread CPU clock would be exact under OS preemption but
//! costs a system call per read, two per poll, which measured as a few percent
//! of a `hello` request.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `future`, returning its output and the time spent inside its polls.
pub async fn timed<F: Future>(future: F) -> (F::Output, Duration) {
    let mut future = std::pin::pin!(future);
    let mut busy = Duration::ZERO;
    let output = std::future::poll_fn(|cx| {
        let started = Instant::now();
        let poll = future.as_mut().poll(cx);
        busy += started.elapsed();
        poll
    })
    .await;
    (output, busy)
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
        let ((), idle) = timed(tokio::time::sleep(Duration::from_millis(50))).await;
        assert!(idle < Duration::from_millis(20), "sleeping used {idle:?}");
        let spin = async {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(30) {}
        };
        let ((), busy) = timed(spin).await;
        assert!(busy >= Duration::from_millis(20), "spinning used {busy:?}");
    }
}

/// What one invocation used, as far as the guest is concerned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measurement {
    /// Guest CPU time (time inside polls of the guest's future).
    pub cpu: Duration,
    /// The largest linear memory, in bytes.
    pub peak_memory_bytes: usize,
    /// Linear memory integrated over time, in byte-milliseconds.
    pub memory_byte_ms: u128,
    /// wasi-nn compute on CPU, in microseconds.
    pub nn_cpu_us: u64,
    /// wasi-nn compute on GPU, in microseconds.
    pub nn_gpu_us: u64,
}

impl Measurement {
    /// Adds what another call used, for work made of many calls (a dataset
    /// build): times and memory-time add up, the peak is the larger one.
    pub fn add(&mut self, other: &Measurement) {
        self.cpu += other.cpu;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.memory_byte_ms += other.memory_byte_ms;
        self.nn_cpu_us += other.nn_cpu_us;
        self.nn_gpu_us += other.nn_gpu_us;
    }
}
