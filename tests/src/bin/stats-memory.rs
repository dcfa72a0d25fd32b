//! What the live statistics cost in memory: a `StatsStore` with 1,000
//! functions, each called every window for a number of windows, measured by
//! a counting allocator (every byte the store holds, sketches included).
//! Prints the bytes per function, per window, and what a day of 10-second
//! windows comes to under the default cap (`monitor.max_windows`).
//!   cargo run --release -p muon-tests --bin stats-memory [WINDOWS] [CALLS_PER_WINDOW]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use muon::stats::{Sample, SeriesKey, SeriesKind, StatsSettings, StatsStore};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counter only adds up the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FUNCTIONS: usize = 1000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let windows: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(60);
    let calls: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let settings = StatsSettings::default();
    let before = LIVE.load(Ordering::Relaxed);
    let store = StatsStore::new(settings);
    let series: Vec<_> = (0..FUNCTIONS)
        .map(|i| {
            store.series(SeriesKey {
                kind: SeriesKind::Function,
                tenant: Arc::from("tenant"),
                name: Arc::from(format!("function-{i}").as_str()),
                version: 1,
            })
        })
        .collect();
    let idle = LIVE.load(Ordering::Relaxed) - before;
    let window_ms = store.window_ms();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for window in 0..windows {
        for one in &series {
            for call in 0..calls {
                // Latencies of 0.3 to 3 ms with a tail to 50 ms, as a small function has.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let micros = 300 + state % 2700 + if call % 100 == 0 { 47_000 } else { 0 };
                let sample = Sample { latency: Duration::from_micros(micros), ..Sample::default() };
                one.record_at(window * window_ms + i64::try_from(call).unwrap_or(0), &sample);
            }
        }
    }
    let busy = LIVE.load(Ordering::Relaxed) - before;
    let held = store.window_count();
    let per_window = (busy - idle) as f64 / held as f64;
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    println!("statistics memory, {FUNCTIONS} functions, {windows} windows of {calls} calls each:");
    println!(
        "  deployed, no calls yet: {:.1} MiB ({} bytes per function)",
        mib(idle as f64),
        idle / FUNCTIONS as isize
    );
    println!("  after the calls: {:.1} MiB, {held} windows, {per_window:.0} bytes per window", mib(busy as f64));
    let day = 24 * 3600 / settings.window.as_secs().max(1) as usize;
    let capped = settings.max_windows.min(day * FUNCTIONS);
    println!(
        "  a day of busy 10 s windows for all of them would be {:.0} MiB; the cap of {} windows holds it to {:.0} MiB",
        mib(per_window * (day * FUNCTIONS) as f64),
        settings.max_windows,
        mib(per_window * capped as f64)
    );
    drop(series);
    drop(store);
    Ok(())
}
