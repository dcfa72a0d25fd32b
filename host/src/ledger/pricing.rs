//! Prices in integer micro-units (1 unit = 1,000,000 micros). A record's
//! cost is computed once, when it is written, and stored with it; each
//! component is rounded down separately, so totals are sums of integers.

use serde::Deserialize;

use crate::db::UsageRecord;

/// A price list. Every price is in micro-units.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Plan {
    /// Per request, failed ones included (quota and rate rejections are free).
    pub per_request: i64,
    /// Per millisecond of guest CPU time.
    pub per_cpu_ms: i64,
    /// Per gigabyte-second of guest memory (10^9 bytes for one second).
    pub per_gb_second: i64,
    /// Per millisecond of wasi-nn compute on CPU.
    pub per_cpu_compute_ms: i64,
    /// Per millisecond of wasi-nn compute on GPU.
    pub per_gpu_compute_ms: i64,
    /// Per megabyte (10^6 bytes) of response body.
    pub per_mb_out: i64,
}

impl Plan {
    /// The cost of one record.
    pub fn cost(&self, record: &UsageRecord) -> i64 {
        let scaled = |amount: i64, price: i64, per: i128| -> i128 { i128::from(amount) * i128::from(price) / per };
        let total = i128::from(self.per_request)
            + scaled(record.cpu_us, self.per_cpu_ms, 1_000)
            + scaled(record.memory_byte_ms, self.per_gb_second, 1_000_000_000_000)
            + scaled(record.nn_cpu_us, self.per_cpu_compute_ms, 1_000)
            + scaled(record.nn_gpu_us, self.per_gpu_compute_ms, 1_000)
            + scaled(record.bytes_out, self.per_mb_out, 1_000_000);
        i64::try_from(total).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UsageRecord {
        UsageRecord {
            request_id: "r".into(),
            tenant: "t".into(),
            function: "f".into(),
            version: 1,
            start_ms: 0,
            wall_us: 10_000,
            cpu_us: 2_500,
            peak_memory_bytes: 2_000_000,
            memory_byte_ms: 2_000_000 * 10,
            nn_cpu_us: 1_000,
            nn_gpu_us: 500,
            bytes_in: 10,
            bytes_out: 3_000_000,
            outcome: "ok".into(),
            cost_micros: 0,
        }
    }

    #[test]
    fn cost_is_a_sum_of_integer_parts() {
        let plan = Plan {
            per_request: 100,
            per_cpu_ms: 40,
            per_gb_second: 1_000_000,
            per_cpu_compute_ms: 30,
            per_gpu_compute_ms: 200,
            per_mb_out: 7,
        };
        // 100 + 2.5 ms * 40 + 2e7 byte-ms (0.00002 GB-s) * 1e6 + 1 ms * 30 + 0.5 ms * 200 + 3 MB * 7
        assert_eq!(plan.cost(&record()), 100 + 100 + 20 + 30 + 100 + 21);
        assert_eq!(Plan::default().cost(&record()), 0);
    }
}
