//! The helpers every benchmark shares: reading the `bench: NAME key=value...` lines a lab
//! script prints, the median and spread of a series, number formatting, and writing the JSON
//! figures under target/bench/.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// The `bench: NAME key=value...` lines a lab script printed, as key/value lists.
pub(super) fn bench_lines(output: &str, name: &str) -> Vec<Vec<(String, String)>> {
    let prefix = format!("bench: {name} ");
    output
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix(&prefix))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub(super) fn field(pairs: &[(String, String)], key: &str) -> Result<u64> {
    let value = pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .with_context(|| format!("no `{key}=` in the bench line"))?;
    value
        .parse()
        .with_context(|| format!("`{key}={value}` is not a count (the script's output changed?)"))
}

pub(super) fn text<'a>(pairs: &'a [(String, String)], key: &str) -> Result<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .with_context(|| format!("no `{key}=` in the bench line"))
}

/// A run's rate, units a second of guest time, from its `units=N ns=T` (T nanoseconds by the
/// guest's clock, `now_ns` in tests/lib/lab.sh: under -icount one nanosecond is one
/// instruction, where /proc/uptime's centiseconds were 500 instructions a connection).
pub(super) fn rate(pairs: &[(String, String)]) -> Result<f64> {
    let ns = field(pairs, "ns")?;
    if ns == 0 {
        bail!("a run of no guest time: the script's clock is broken");
    }
    Ok(float(field(pairs, "units")?) / (float(ns) / 1e9))
}

/// kB counts and seconds as floats for the arithmetic: far below 2^52, nothing is lost.
#[expect(
    clippy::cast_precision_loss,
    reason = "counts of kB and seconds, far below 2^52"
)]
pub(super) fn float(value: u64) -> f64 {
    value as f64
}

/// Median, min and max.
pub(super) fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        f64::midpoint(sorted[n / 2 - 1], sorted[n / 2])
    };
    (median, sorted[0], sorted[n - 1])
}

pub(super) fn listed(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn mib(kb: u64) -> String {
    mib_f(float(kb))
}

pub(super) fn mib_f(kb: f64) -> String {
    format!("{:.1} MiB", kb / 1024.0)
}

pub(super) fn write(dir: &Path, name: &str, json: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_lines_among_console_noise() {
        let output = "lab: [123] clients done\r\nbench: loss delivered=40 lost=1960 conns=2000\r\n\
                      bench: lossy x=1\nbench: overhead round=1 mode=with conns=10 cs=5\n";
        let lines = bench_lines(output, "loss");
        assert_eq!(lines.len(), 1);
        assert_eq!(field(&lines[0], "lost").unwrap(), 1960);
        assert!(field(&lines[0], "new").is_err());
        assert_eq!(bench_lines(output, "overhead")[0][1].1, "with");
    }

    #[test]
    fn a_rate_is_units_a_second_of_guest_time() {
        let output = "bench: overhead mode=a units=20000 ns=4000000000\n\
                      bench: overhead mode=b units=20000 ns=0\n\
                      bench: overhead mode=c units=20000 cs=400\n";
        let lines = bench_lines(output, "overhead");
        assert!((rate(&lines[0]).unwrap() - 5000.0).abs() < 1e-9);
        assert!(rate(&lines[1])
            .unwrap_err()
            .to_string()
            .contains("no guest time"));
        // The centisecond lines of the scripts before the nanosecond clock are refused.
        assert!(rate(&lines[2])
            .unwrap_err()
            .to_string()
            .contains("no `ns=`"));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
