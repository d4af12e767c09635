//! rseqmalloc against a `--candidate` build, paired by repetition.
//!
//! Repetition `i` of every allocator on a workload runs in the same pass over the workloads,
//! next to each other (the runner rotates the allocators' order from pass to pass), so the
//! ratio of rseqmalloc's run to the candidate's run of one pass cancels the machine's drift
//! between passes, which on a shared VM is often larger than the change being measured. Per
//! workload the report gives the median of those ratios and a distribution-free confidence
//! interval for it: the order statistics `[r(k), r(n+1-k)]` of the `n` sorted ratios, which
//! hold the true median ratio with probability `1 - 2 P(B <= k-1)`, `B ~ Binomial(n, 1/2)` (the
//! sign test's interval; it assumes nothing about the shape of the noise, only that the pairs
//! are independent). The interval is the narrowest such one with at least [`CONFIDENCE`]
//! coverage, and its exact coverage is reported beside it: 94 % for 5 pairs, 96 % for 9.

use serde::Serialize;

use crate::measure::Sample;
use crate::run::Cell;

/// The coverage the intervals aim at: the narrowest order-statistic interval whose coverage is
/// at least this is chosen (with fewer than 5 pairs none reaches it: the widest is given).
pub const CONFIDENCE: f64 = 0.90;

/// Pairs below which an interval says little (3 pairs: 75 % coverage at best); the text report
/// leaves such workloads out.
pub const MIN_PAIRS: usize = 3;

/// The median of paired ratios (rseqmalloc's run / the candidate's run of the same pass) and a
/// confidence interval for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Median of the ratios.
    pub median: f64,
    /// Lower and upper end of the interval (ratios, like `median`).
    pub lo: f64,
    pub hi: f64,
    /// Pairs the ratios came from.
    pub pairs: usize,
    /// Probability that `[lo, hi]` holds the true median ratio, exactly (0 for one pair).
    pub confidence: f64,
}

impl Interval {
    /// The median and interval of `ratios` (non-finite ones are dropped); `None` when none is
    /// left.
    pub fn of(mut ratios: Vec<f64>) -> Option<Self> {
        ratios.retain(|r| r.is_finite());
        let n = ratios.len();
        if n == 0 {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        // The widest interval is k = 1 (min to max); narrow it while the coverage allows.
        let mut k = 1;
        while k < n.div_ceil(2) && coverage(n, k + 1) >= CONFIDENCE {
            k += 1;
        }
        Some(Interval {
            median,
            lo: ratios[k - 1],
            hi: ratios[n - k],
            pairs: n,
            confidence: coverage(n, k),
        })
    }

    /// Whether the interval lies wholly below or wholly above 1: the run resolved the change.
    pub fn resolved(&self) -> bool {
        self.hi < 1.0 || self.lo > 1.0
    }

    /// Where the interval lies against `bound`: wholly above it, wholly at or below it, or
    /// across it (the run cannot tell).
    pub fn against(&self, bound: f64) -> Side {
        if self.lo > bound {
            Side::Above
        } else if self.hi <= bound {
            Side::AtOrBelow
        } else {
            Side::Across
        }
    }
}

/// Where an [`Interval`] lies against a bound ([`Interval::against`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Above,
    AtOrBelow,
    Across,
}

/// Coverage of `[r(k), r(n+1-k)]` (1-based order statistics of `n` values) as an interval for
/// their median: `1 - 2 P(B <= k-1)`, `B ~ Binomial(n, 1/2)`.
pub fn coverage(n: usize, k: usize) -> f64 {
    debug_assert!(k >= 1 && 2 * k <= n + 1);
    let (mut term, mut below) = (1.0f64, 0.0f64); // term = C(n, i)
    for i in 0..k {
        if i > 0 {
            term = term * (n - i + 1) as f64 / i as f64;
        }
        below += term;
    }
    (1.0 - 2.0 * below / 2f64.powi(n as i32)).max(0.0)
}

/// One workload's paired comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedWorkload {
    pub workload: String,
    /// Wall time, rseqmalloc / candidate.
    pub time: Option<Interval>,
    /// Peak RSS, rseqmalloc / candidate.
    pub peak_rss: Option<Interval>,
}

/// Pairs `mine` (rseqmalloc's cell) with `theirs` (the candidate's, same workload) run by run;
/// `None` unless both succeeded in every repetition (then their runs line up pass by pass).
pub fn compare(mine: &Cell, theirs: &Cell) -> Option<PairedWorkload> {
    if !mine.is_ok() || !theirs.is_ok() || mine.runs.len() != theirs.runs.len() {
        return None;
    }
    let ratios = |figure: fn(&Sample) -> f64| {
        mine.runs
            .iter()
            .zip(&theirs.runs)
            .filter(|(_, t)| figure(t) > 0.0)
            .map(|(m, t)| figure(m) / figure(t))
            .collect::<Vec<f64>>()
    };
    Some(PairedWorkload {
        workload: mine.workload.clone(),
        time: Interval::of(ratios(|s| s.wall_ms)),
        peak_rss: Interval::of(ratios(|s| s.max_rss_kib as f64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coverage of the order-statistic intervals, against the binomial sums by hand.
    #[test]
    fn coverage_is_the_sign_test_s() {
        assert_eq!(coverage(1, 1), 0.0);
        assert_eq!(coverage(2, 1), 0.5);
        assert_eq!(coverage(5, 1), 1.0 - 2.0 / 32.0);
        assert_eq!(coverage(5, 2), 1.0 - 2.0 * 6.0 / 32.0);
        assert_eq!(coverage(9, 2), 1.0 - 2.0 * 10.0 / 512.0);
        assert_eq!(coverage(9, 3), 1.0 - 2.0 * 46.0 / 512.0);
        assert_eq!(coverage(15, 4), 1.0 - 2.0 * 576.0 / 32768.0);
    }

    /// The narrowest interval with at least 90 % coverage; with too few pairs, the widest.
    #[test]
    fn interval_from_order_statistics() {
        assert_eq!(Interval::of(vec![]), None);
        assert_eq!(Interval::of(vec![f64::NAN, f64::INFINITY]), None);

        let one = Interval::of(vec![1.5]).unwrap();
        assert_eq!((one.median, one.lo, one.hi, one.pairs), (1.5, 1.5, 1.5, 1));
        assert_eq!(one.confidence, 0.0);

        // 5 pairs: only min..max reaches 90 % (93.75 %).
        let five = Interval::of(vec![1.2, 0.9, 1.0, 1.1, 0.8]).unwrap();
        assert_eq!((five.median, five.lo, five.hi), (1.0, 0.8, 1.2));
        assert_eq!((five.pairs, five.confidence), (5, 0.9375));
        assert!(!five.resolved());

        // 9 pairs: the second smallest to the second largest (96.1 %); the third would be 82 %.
        let nine: Vec<f64> = (1..=9).map(|i| 0.90 + 0.01 * i as f64).collect();
        let nine = Interval::of(nine).unwrap();
        assert!((nine.lo - 0.92).abs() < 1e-12 && (nine.hi - 0.98).abs() < 1e-12);
        assert!((nine.median - 0.95).abs() < 1e-12);
        assert!((nine.confidence - (1.0 - 20.0 / 512.0)).abs() < 1e-12);
        assert!(nine.resolved(), "all below 1: {nine:?}");

        // An even count's median is the mean of the middle two.
        let four = Interval::of(vec![1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((four.median, four.lo, four.hi), (2.5, 1.0, 4.0));
        assert_eq!(four.confidence, 0.875);

        // Above 1 is resolved too.
        assert!(Interval::of(vec![1.1, 1.2, 1.3, 1.05, 1.15])
            .unwrap()
            .resolved());
    }
}
