//! The arithmetic of `balance`: expected shares for a scheduler, the deviation of observed
//! counts from them, the chi-square test, and the confidence bounds of a random selection.
//!
//! rr and wrr are deterministic: over whole rounds they hit their shares exactly, so the only
//! honest slack is the round a window cuts in two. A backend deviates when its count is off
//! by more than the tolerance (relative) **and** by more than one round's worth of its picks
//! (rr: 1 connection; wrr: weight/gcd connections). Without the second condition, 10
//! connections over 3 rr backends (4/3/3, as exact as rr can be) would fail a 5 % tolerance.
//!
//! A random selection (kube-proxy's nftables and iptables modes) has no rounds: its counts
//! scatter around the shares as a multinomial sample does, so it is judged by the chi-square
//! test's p-value, and each backend's share gets a Wilson score interval.

use statrs::distribution::{ChiSquared, ContinuousCDF as _, Normal};

/// The share of new connections each backend should get, for the schedulers that define one
/// (`None` for the others: lc and friends balance load, sh/mh/dh hash clients).
///
/// rr skips weight-0 backends and takes the others in turn; wrr picks in proportion to weight.
#[must_use]
pub fn expected_shares(scheduler: &str, weights: &[u32]) -> Option<Vec<f64>> {
    let positive = weights.iter().filter(|w| **w > 0).count();
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    match scheduler {
        "rr" => Some(
            weights
                .iter()
                .map(|&w| {
                    if w > 0 {
                        1.0 / real(positive as u64)
                    } else {
                        0.0
                    }
                })
                .collect(),
        ),
        "wrr" => Some(
            weights
                .iter()
                .map(|&w| {
                    if total > 0 {
                        f64::from(w) / real(total)
                    } else {
                        0.0
                    }
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Connections per backend one scheduling round gives (see the module documentation).
#[must_use]
pub fn round_slack(scheduler: &str, weights: &[u32]) -> Vec<f64> {
    let divisor = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .reduce(gcd)
        .unwrap_or(1);
    weights
        .iter()
        .map(|&w| match (scheduler, w) {
            (_, 0) => 0.0,
            ("wrr", w) => f64::from(w / divisor),
            _ => 1.0,
        })
        .collect()
}

/// A count as a float for the arithmetic.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    reason = "connection counts stay far below 2^52, where f64 is exact"
)]
pub fn real(count: u64) -> f64 {
    count as f64
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// How far observed counts are from the expected shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Deviation {
    /// Per backend, the connections its share of the total stands for.
    pub expected: Vec<f64>,
    /// Per backend, `|count - expected| / expected`; `None` where nothing was expected.
    pub relative_error: Vec<Option<f64>>,
    /// Per backend: off by more than the tolerance and more than one round (or any count where
    /// nothing was expected).
    pub beyond: Vec<bool>,
    /// Largest relative error over the backends that expected something.
    pub max_relative_error: Option<f64>,
    /// Pearson's statistic over the backends that expected something.
    pub chi_square: Option<f64>,
    pub degrees_of_freedom: Option<u32>,
    /// The probability of a deviation at least this large if the shares held; 0 when a backend
    /// that should get nothing got something. `None` with fewer than two backends expecting
    /// connections, or no connections.
    pub p_value: Option<f64>,
}

impl Deviation {
    #[must_use]
    pub fn any_beyond(&self) -> bool {
        self.beyond.iter().any(|b| *b)
    }
}

/// Compares `counts` with `shares` of their total. The three slices are per backend.
#[must_use]
pub fn deviation(counts: &[u64], shares: &[f64], slack: &[f64], tolerance: f64) -> Deviation {
    let total: u64 = counts.iter().sum();
    let n = real(total);
    let expected: Vec<f64> = shares.iter().map(|p| p * n).collect();
    let mut relative_error = Vec::with_capacity(counts.len());
    let mut beyond = Vec::with_capacity(counts.len());
    let mut chi_square = 0.0;
    let mut cells = 0u32;
    let mut impossible = false;
    for ((&count, &e), &round) in counts.iter().zip(&expected).zip(slack) {
        let off = (real(count) - e).abs();
        if e > 0.0 {
            relative_error.push(Some(off / e));
            beyond.push(off > (tolerance * e).max(round));
            chi_square += (real(count) - e).powi(2) / e;
            cells += 1;
        } else {
            relative_error.push(None);
            beyond.push(count > 0);
            impossible |= count > 0;
        }
    }
    let max_relative_error = relative_error.iter().flatten().copied().reduce(f64::max);
    let tested = total > 0 && cells >= 2;
    let p_value = if impossible {
        Some(0.0)
    } else if tested {
        Some(chi_square_p_value(chi_square, cells - 1))
    } else {
        None
    };
    Deviation {
        expected,
        relative_error,
        beyond,
        max_relative_error,
        chi_square: tested.then_some(chi_square),
        degrees_of_freedom: tested.then(|| cells - 1),
        p_value,
    }
}

/// P(X >= `statistic`) for X chi-square distributed with `degrees_of_freedom` (> 0).
#[must_use]
pub fn chi_square_p_value(statistic: f64, degrees_of_freedom: u32) -> f64 {
    match ChiSquared::new(f64::from(degrees_of_freedom)) {
        Ok(distribution) => distribution.sf(statistic).clamp(0.0, 1.0),
        // Only a degree of freedom of 0 gets here, which `deviation` never asks for.
        Err(_) => f64::NAN,
    }
}

/// The Wilson score interval of a proportion, `count` of `total`, at confidence
/// `1 - significance`: the shares for which a two-sided test at `significance` would not
/// reject `count`. Unlike the textbook `p ± z·√(p(1-p)/n)` it stays within [0, 1] and does not
/// shrink to a point at 0 or `total` (E. B. Wilson, 1927). `None` without a total.
#[must_use]
pub fn wilson_interval(count: u64, total: u64, significance: f64) -> Option<(f64, f64)> {
    if total == 0 || count > total {
        return None;
    }
    let z = Normal::standard().inverse_cdf(1.0 - significance / 2.0);
    let (x, n, z2) = (real(count), real(total), z * z);
    let centre = (x + z2 / 2.0) / (n + z2);
    let half = z / (n + z2) * (x * (n - x) / n + z2 / 4.0).sqrt();
    // At 0 and at `total` the bound is exactly 0 or 1; the arithmetic leaves a rounding error.
    let low = if count == 0 { 0.0 } else { centre - half };
    let high = if count == total { 1.0 } else { centre + half };
    Some((low.max(0.0), high.min(1.0)))
}

/// The probability that a random selection which picks a backend with probability `share`
/// passes it over `run` times in a row: how unlikely a backend's silence since its last
/// connection is if it were still being chosen.
#[must_use]
pub fn miss_probability(share: f64, run: u64) -> f64 {
    (1.0 - share.clamp(0.0, 1.0)).powf(real(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` within `relative` of `b`.
    fn near(a: f64, b: f64, relative: f64, what: &str) {
        assert!((a - b).abs() <= relative * b.abs(), "{what}: {a} != {b}");
    }

    fn close(a: f64, b: f64, what: &str) {
        assert!((a - b).abs() < 1e-6, "{what}: {a} != {b}");
    }

    #[test]
    fn chi_square_p_values_match_the_tables() {
        // Critical values from any chi-square table (and R's qchisq).
        close(chi_square_p_value(3.841_459, 1), 0.05, "df 1, 5 %");
        close(chi_square_p_value(5.991_465, 2), 0.05, "df 2, 5 %");
        close(chi_square_p_value(9.210_340, 2), 0.01, "df 2, 1 %");
        close(chi_square_p_value(11.070_498, 5), 0.05, "df 5, 5 %");
        close(chi_square_p_value(0.0, 3), 1.0, "no deviation");
        // With 2 degrees of freedom the survival function is exp(-x/2).
        close(
            chi_square_p_value(7.5, 2),
            (-3.75f64).exp(),
            "df 2 closed form",
        );
    }

    #[test]
    fn chi_square_p_values_at_the_random_judgement_s_significance() {
        // The 0.1 % critical values of the chi-square tables (NIST/SEMATECH e-Handbook,
        // 1.3.6.7.4), given to three decimals: p within that rounding of 0.001.
        for (df, critical) in [
            (1, 10.828),
            (2, 13.816),
            (3, 16.266),
            (4, 18.467),
            (5, 20.515),
            (10, 29.588),
            (20, 45.315),
            (100, 149.449),
        ] {
            near(
                chi_square_p_value(critical, df),
                0.001,
                2e-3,
                &format!("df {df}"),
            );
        }
        // Closed forms: df 2 is exp(-x/2), df 4 is exp(-x/2)(1 + x/2).
        near(chi_square_p_value(13.8155, 2), 0.001, 1e-5, "df 2, 13.8155");
        let x = -2.0 * 0.001f64.ln();
        near(chi_square_p_value(x, 2), 0.001, 1e-12, "df 2, -2 ln 0.001");
        for x in [0.5, 4.0, 18.467, 60.0] {
            near(
                chi_square_p_value(x, 4),
                (-x / 2.0).exp() * (1.0 + x / 2.0),
                1e-10,
                &format!("df 4 at {x}"),
            );
        }
        // Far in the tail the p-value is tiny but not zero.
        let tail = chi_square_p_value(400.0, 2);
        near(tail, (-200.0f64).exp(), 1e-9, "df 2 at 400");
        assert!(tail > 0.0);
    }

    #[test]
    fn wilson_intervals_match_newcombe_s_table() {
        // R. G. Newcombe, Two-sided confidence intervals for the single proportion (Statistics
        // in Medicine, 1998), table I, method 3, at 95 %.
        for (count, total, low, high) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let (l, h) = wilson_interval(count, total, 0.05).expect("a total");
            assert!(
                (l - low).abs() < 5e-5 && (h - high).abs() < 5e-5,
                "{count}/{total}: [{l}, {h}] != [{low}, {high}]"
            );
        }
        // At 99.9 % (z = 3.2905) the interval is wider, and still within [0, 1].
        let (l, h) = wilson_interval(100, 300, 0.001).unwrap();
        let (l95, h95) = wilson_interval(100, 300, 0.05).unwrap();
        assert!(l < l95 && h > h95 && l > 0.25 && h < 0.43, "[{l}, {h}]");
        assert_eq!(
            wilson_interval(5, 5, 0.001).map(|(_, high)| high),
            Some(1.0)
        );
        assert_eq!(wilson_interval(0, 0, 0.001), None);
        assert_eq!(wilson_interval(6, 5, 0.001), None);
    }

    #[test]
    fn a_silent_backend_becomes_unlikely_run_by_run() {
        close(miss_probability(1.0 / 3.0, 0), 1.0, "no run");
        close(miss_probability(1.0 / 3.0, 2), 4.0 / 9.0, "two misses");
        // 18 misses of a third: below 0.1 %, 17 not.
        assert!(miss_probability(1.0 / 3.0, 18) < 0.001);
        assert!(miss_probability(1.0 / 3.0, 17) > 0.001);
        close(miss_probability(0.0, 1000), 1.0, "a backend without share");
        close(miss_probability(1.0, 1), 0.0, "the only backend");
    }

    #[test]
    fn shares_per_scheduler() {
        assert_eq!(
            expected_shares("rr", &[1, 5, 0, 1]),
            Some(vec![1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 3.0])
        );
        assert_eq!(
            expected_shares("wrr", &[3, 2, 1, 0]),
            Some(vec![0.5, 2.0 / 6.0, 1.0 / 6.0, 0.0])
        );
        assert_eq!(expected_shares("wrr", &[0, 0]), Some(vec![0.0, 0.0]));
        assert_eq!(expected_shares("lc", &[1, 1]), None);
        assert_eq!(expected_shares("sh", &[1, 1]), None);
        assert_eq!(round_slack("wrr", &[30, 20, 10, 0]), [3.0, 2.0, 1.0, 0.0]);
        assert_eq!(round_slack("rr", &[1, 7, 0]), [1.0, 1.0, 0.0]);
    }

    #[test]
    fn exact_rr_and_wrr_do_not_deviate() {
        let shares = expected_shares("rr", &[1, 1, 1]).unwrap();
        let d = deviation(&[100, 100, 100], &shares, &[1.0; 3], 0.05);
        assert_eq!(d.max_relative_error, Some(0.0));
        assert_eq!(d.chi_square, Some(0.0));
        assert_eq!(d.degrees_of_freedom, Some(2));
        assert_eq!(d.p_value, Some(1.0));
        assert!(!d.any_beyond());
        // 10 over 3: as exact as rr gets, 20 % off but within one round.
        let d = deviation(&[4, 3, 3], &shares, &[1.0; 3], 0.05);
        close(d.max_relative_error.unwrap(), 0.2, "4 vs 3.33");
        assert!(!d.any_beyond(), "{d:?}");
        let weights = [3, 2, 1];
        let d = deviation(
            &[300, 200, 100],
            &expected_shares("wrr", &weights).unwrap(),
            &round_slack("wrr", &weights),
            0.05,
        );
        assert_eq!(d.p_value, Some(1.0));
        assert!(!d.any_beyond());
    }

    #[test]
    fn skew_and_impossible_counts_deviate() {
        let shares = expected_shares("rr", &[1, 1, 1]).unwrap();
        // A backend set to weight 0 half-way: 25/25/10 instead of 20 each.
        let d = deviation(&[25, 25, 10], &shares, &[1.0; 3], 0.05);
        close(d.chi_square.unwrap(), 7.5, "chi-square");
        close(d.p_value.unwrap(), (-3.75f64).exp(), "p");
        close(d.max_relative_error.unwrap(), 0.5, "max relative error");
        assert_eq!(d.beyond, [true, true, true]);
        // A weight-0 backend that received connections: impossible under the shares.
        let shares = expected_shares("rr", &[1, 1, 0]).unwrap();
        let d = deviation(&[10, 10, 1], &shares, &[1.0, 1.0, 0.0], 0.05);
        assert_eq!(d.relative_error[2], None);
        assert_eq!(d.beyond, [false, false, true]);
        assert_eq!(d.p_value, Some(0.0));
        // No connections, or a single backend: nothing to test.
        let d = deviation(&[0, 0], &[0.5, 0.5], &[1.0, 1.0], 0.05);
        assert_eq!((d.p_value, d.chi_square), (None, None));
        assert!(!d.any_beyond());
        let d = deviation(&[7], &[1.0], &[1.0], 0.05);
        assert_eq!(d.p_value, None);
        assert_eq!(d.max_relative_error, Some(0.0));
    }
}
