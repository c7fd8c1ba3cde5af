//! `soak`: minutes of traffic and backend churn with the tracer running throughout, judged on
//! a clean exit, exact accounting and flat memory.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::figures::{bench_lines, field, float, mib_f, text, write};
use super::guest::{lab_run_with, GuestClock};
use super::Args;

/// The soak fails if the tracer's RSS grows faster than this over the second half of the run
/// (least-squares slope of the 10 s samples). A leak of 100 bytes per connection at the
/// soak's rate (about 50 connections/s under TCG) is 290 KiB/min; allocator noise (a 512 KiB
/// step mid-window moves the slope by about 150 KiB/min over 5 minutes) stays under it.
const SOAK_RSS_SLOPE_BOUND_KB_PER_MIN: f64 = 256.0;

/// Least-squares slope of (seconds, kB) points, in kB per minute.
fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let n = float(points.len() as u64);
    let (mean_t, mean_v) = points
        .iter()
        .fold((0.0, 0.0), |(t, v), (pt, pv)| (t + pt / n, v + pv / n));
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, s), (t, v)| {
        (
            c + (t - mean_t) * (v - mean_v),
            s + (t - mean_t) * (t - mean_t),
        )
    });
    if var == 0.0 {
        0.0
    } else {
        cov / var * 60.0
    }
}

/// Accounting of one run: every connection the kernel scheduled (`conns`, per service) is a
/// delivered `new` event or one of the `lost` records. Lost records are not attributed to a
/// service (the ring drops them before decoding) and may be other kinds (templates), so with
/// losses a service may show fewer events than connections, by at most `lost` in all.
fn unaccounted(services: &[(u64, u64)], lost: u64) -> Option<u64> {
    let (mut conns, mut new) = (0, 0);
    for &(c, n) in services {
        if n > c {
            // More events than connections: nothing the ring can explain.
            return Some(n - c);
        }
        conns += c;
        new += n;
    }
    let missing = conns - new;
    (missing > lost).then_some(missing - lost)
}

/// What one soak run reported and how it was judged.
struct Soak<'a> {
    total: &'a [(String, String)],
    services: Vec<&'a [(String, String)]>,
    /// (seconds into the traffic, tracer VmRSS kB)
    rss: Vec<(f64, f64)>,
    status: u64,
    summary: bool,
    lost: u64,
    conns: u64,
    new: u64,
    missing: Option<u64>,
    slope: f64,
}

impl<'a> Soak<'a> {
    fn judge(lines: &'a [Vec<(String, String)>]) -> Result<Soak<'a>> {
        let mut rss = Vec::new();
        let mut services = Vec::new();
        let mut total = None;
        for line in lines {
            let has = |key: &str| line.iter().any(|(k, _)| k == key);
            if has("rss_kb") {
                rss.push((float(field(line, "t")?), float(field(line, "rss_kb")?)));
            } else if has("service") {
                services.push(line.as_slice());
            } else if has("status") {
                total = Some(line.as_slice());
            }
        }
        let Some(total) = total else {
            bail!("no `bench: soak status=...` line from the script");
        };
        if services.is_empty() || rss.len() < 4 {
            bail!(
                "the soak script reported {} services and {} RSS samples; too few to judge",
                services.len(),
                rss.len()
            );
        }
        let lost = field(total, "lost")?;
        let counts = services
            .iter()
            .map(|s| Ok((field(s, "conns")?, field(s, "new")?)))
            .collect::<Result<Vec<_>>>()?;
        let end = rss.last().map_or(0.0, |p| p.0);
        let second_half: Vec<(f64, f64)> =
            rss.iter().copied().filter(|p| p.0 >= end / 2.0).collect();
        Ok(Soak {
            total,
            status: field(total, "status")?,
            summary: field(total, "summary")? == 1,
            lost,
            conns: counts.iter().map(|c| c.0).sum(),
            new: counts.iter().map(|c| c.1).sum(),
            missing: unaccounted(&counts, lost),
            slope: slope_per_min(&second_half),
            services,
            rss,
        })
    }

    fn clean_exit(&self) -> bool {
        self.status == 0 && self.summary
    }

    fn flat(&self) -> bool {
        self.slope <= SOAK_RSS_SLOPE_BOUND_KB_PER_MIN
    }

    fn passed(&self) -> bool {
        self.clean_exit() && self.missing.is_none() && self.flat()
    }

    /// (first, last, max) kB.
    fn rss_span(&self) -> (f64, f64, f64) {
        let max = self.rss.iter().map(|p| p.1).fold(0.0, f64::max);
        (self.rss[0].1, self.rss[self.rss.len() - 1].1, max)
    }

    fn print(&self, minutes: u32) -> Result<()> {
        let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
        let total = self.total;
        println!(
            "soak: {minutes} min, {} churn steps; tracer exit status {}, summary {} ({})",
            field(total, "churn")?,
            self.status,
            if self.summary { "printed" } else { "MISSING" },
            verdict(self.clean_exit())
        );
        for s in &self.services {
            let named = match field(s, "named")? {
                0 => String::new(),
                n => format!(", {n} named"),
            };
            let template = match field(s, "template")? {
                0 => String::new(),
                t => format!(" (+{t} template)"),
            };
            println!(
                "soak {} {} {} {}: kernel Conns {} / new events {}{template}{named}",
                text(s, "service")?,
                text(s, "proto")?,
                text(s, "vip")?,
                text(s, "sched")?,
                field(s, "conns")?,
                field(s, "new")?,
            );
        }
        println!(
            "soak accounting: {} connections scheduled (ipvsadm --stats Conns), {} new + {} lost; \
             reused {}, no_dest {}, malformed {}; client connections ok {} failed {} ({})",
            self.conns,
            self.new,
            self.lost,
            field(total, "reused")?,
            field(total, "no_dest")?,
            field(total, "malformed")?,
            field(total, "clients_ok")?,
            field(total, "clients_failed")?,
            match self.missing {
                None => "accounted".to_owned(),
                Some(n) => format!("{n} UNACCOUNTED"),
            }
        );
        let (first, last, max) = self.rss_span();
        println!(
            "soak memory: tracer RSS, {} samples 10 s apart: first {}, last {}, max {}; \
             second-half slope {:.1} KiB/min, bound {SOAK_RSS_SLOPE_BOUND_KB_PER_MIN} ({})",
            self.rss.len(),
            mib_f(first),
            mib_f(last),
            mib_f(max),
            self.slope,
            verdict(self.flat())
        );
        Ok(())
    }

    fn json(&self, args: &Args) -> Result<String> {
        let total = self.total;
        let services = self
            .services
            .iter()
            .map(|s| {
                Ok(format!(
                    "    {{ \"name\": \"{}\", \"proto\": \"{}\", \"vip\": \"{}\", \
                     \"scheduler\": \"{}\", \"conns\": {}, \"new\": {}, \"template\": {}, \
                     \"named\": {} }}",
                    text(s, "service")?,
                    text(s, "proto")?,
                    text(s, "vip")?,
                    text(s, "sched")?,
                    field(s, "conns")?,
                    field(s, "new")?,
                    field(s, "template")?,
                    field(s, "named")?
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let series = self
            .rss
            .iter()
            .map(|(t, kb)| format!("[{t:.0}, {kb:.0}]"))
            .collect::<Vec<_>>()
            .join(", ");
        let (first, last, max) = self.rss_span();
        let mut json = String::new();
        write!(
            json,
            "{{\n  \"bench\": \"soak\",\n  \"kernel\": \"{}\",\n  \"minutes\": {},\n  \
             \"churn_steps\": {},\n  \"services\": [\n{}\n  ],\n  \"conns\": {},\n  \"new\": {},\n  \
             \"template\": {},\n  \"reused\": {},\n  \"no_dest\": {},\n  \"lost\": {},\n  \
             \"malformed\": {},\n  \"unaccounted\": {},\n  \"clients_ok\": {},\n  \
             \"clients_failed\": {},\n  \"tracer_status\": {},\n  \"summary_printed\": {},\n  \
             \"rss\": {{ \"first_kb\": {first:.0}, \"last_kb\": {last:.0}, \"max_kb\": {max:.0}, \
             \"second_half_slope_kb_per_min\": {:.1}, \"bound_kb_per_min\": \
             {SOAK_RSS_SLOPE_BOUND_KB_PER_MIN}, \"series_s_kb\": [{series}] }},\n  \
             \"checks\": {{ \"clean_exit\": {}, \"accounted\": {}, \"flat_memory\": {} }},\n  \
             \"passed\": {}\n}}\n",
            args.kernel,
            args.minutes,
            field(total, "churn")?,
            services.join(",\n"),
            self.conns,
            self.new,
            field(total, "template")?,
            field(total, "reused")?,
            field(total, "no_dest")?,
            self.lost,
            field(total, "malformed")?,
            self.missing.unwrap_or(0),
            field(total, "clients_ok")?,
            field(total, "clients_failed")?,
            self.status,
            self.summary,
            self.slope,
            self.clean_exit(),
            self.missing.is_none(),
            self.flat(),
            self.passed(),
        )?;
        Ok(json)
    }
}

pub(super) fn soak(args: &Args, dir: &Path) -> Result<bool> {
    let env = format!("MINUTES={}\n", args.minutes);
    let timeout = Duration::from_mins(u64::from(args.minutes) + 20);
    let output = lab_run_with(args, dir, "soak", &env, &[], timeout, GuestClock::Wall)?;
    let lines = bench_lines(&output, "soak");
    let soak = Soak::judge(&lines)?;
    soak.print(args.minutes)?;
    write(dir, "soak.json", &soak.json(args)?)?;
    if !soak.passed() {
        println!("soak: FAILED (see above)");
    }
    Ok(soak.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_accounting_allows_losses_only_as_counted() {
        assert_eq!(unaccounted(&[(10, 10), (5, 5)], 0), None);
        assert_eq!(unaccounted(&[(10, 9), (5, 5)], 0), Some(1));
        assert_eq!(unaccounted(&[(10, 8), (5, 4)], 3), None);
        assert_eq!(unaccounted(&[(10, 8), (5, 4)], 2), Some(1));
        // An event the kernel never counted is not excused by losses elsewhere.
        assert_eq!(unaccounted(&[(10, 11), (5, 3)], 5), Some(1));
    }

    #[test]
    fn slope_in_kb_per_minute() {
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i) * 10.0, 5000.0)).collect();
        assert!(slope_per_min(&flat).abs() < 1e-9);
        // 1 kB per 10 s is 6 kB per minute.
        let rising: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 5000.0 + f64::from(i)))
            .collect();
        assert!((slope_per_min(&rising) - 6.0).abs() < 1e-9);
    }
}
