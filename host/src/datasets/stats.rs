//! Exact statistics in fp64: compensated (Neumaier) sums, a two-pass
//! variance, and a median that averages the middle two like numpy.

use std::collections::HashSet;

/// A running sum that carries its rounding error (Neumaier's variant of Kahan's).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn value(self) -> f64 {
        self.sum + self.compensation
    }
}

/// Count, extremes, mean and sample standard deviation of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample (ddof 1); `None` with fewer than two values.
    pub std: Option<f64>,
}

/// The moments of the values `values` yields (called twice: the two passes).
pub(crate) fn moments<I: Iterator<Item = f64>>(values: impl Fn() -> I) -> Option<Moments> {
    let (mut count, mut min, mut max, mut sum) = (0u64, f64::INFINITY, f64::NEG_INFINITY, Sum::default());
    for x in values() {
        count += 1;
        min = min.min(x);
        max = max.max(x);
        sum.add(x);
    }
    if count == 0 {
        return None;
    }
    let mean = sum.value() / count as f64;
    let std = (count > 1).then(|| {
        let mut squares = Sum::default();
        for x in values() {
            squares.add((x - mean) * (x - mean));
        }
        (squares.value() / (count - 1) as f64).sqrt()
    });
    Some(Moments { count, min, max, mean, std })
}

/// The median (the mean of the middle two for an even count), or `None` for no values.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let middle = values.len() / 2;
    let (_, upper, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
    let upper = *upper;
    if values.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..middle].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(lower + (upper - lower) / 2.0)
}

/// Distinct values, counted up to `bound`: the count, and whether there are more.
pub(crate) fn distinct(values: impl Iterator<Item = f64>, bound: usize) -> (u64, bool) {
    let mut seen = HashSet::new();
    for x in values {
        // -0.0 and 0.0 are one value.
        seen.insert((x + 0.0).to_bits());
        if seen.len() > bound {
            return (bound as u64, true);
        }
    }
    (seen.len() as u64, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_exact_where_a_naive_sum_is_not() {
        // A large offset makes the one-pass formula lose every digit of the variance.
        let values: Vec<f64> = (0..1000).map(|i| 1e9 + f64::from(i % 10) * 0.1).collect();
        let m = moments(|| values.iter().copied()).unwrap_or(Moments {
            count: 0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            std: None,
        });
        assert_eq!(m.count, 1000);
        assert!((m.mean - (1e9 + 0.45)).abs() < 1e-6);
        // Sample std of 0.0..0.9 repeated: sqrt(sum((x-0.45)^2)/999).
        let want = ((0..1000).map(|i| (f64::from(i % 10) * 0.1 - 0.45).powi(2)).sum::<f64>() / 999.0).sqrt();
        assert!((m.std.unwrap_or(0.0) - want).abs() / want < 1e-5, "{:?} vs {want}", m.std);
        assert_eq!(moments(|| [5.0].into_iter()).map(|m| m.std), Some(None));
        assert!(moments(std::iter::empty::<f64>).is_none());
    }

    #[test]
    fn median_averages_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn distinct_is_bounded() {
        assert_eq!(distinct([1.0, 1.0, 2.0, -0.0, 0.0].into_iter(), 10), (3, false));
        assert_eq!(distinct((0..100).map(f64::from), 10), (10, true));
    }
}
