//! Random selection: kube-proxy's nftables mode (`numgen random mod N vmap`) and iptables mode
//! (a cascade of `statistic --mode random --probability p` rules) pick each new connection's
//! endpoint by chance, and DNAT it there.
//!
//! There is no round to count, so nothing like rr's "off by more than one round": a fair
//! selector's counts scatter around the shares as any multinomial sample does. A service is
//! judged by Pearson's chi-square goodness-of-fit test of its window's counts against the
//! expected shares: **uneven** when the p-value is below [`SIGNIFICANCE`] and some endpoint is
//! off by more than the tolerance (a difference too small to matter is not one, however many
//! connections make it significant); **even** otherwise; **no verdict** until every endpoint
//! with a share expects [`MIN_EXPECTED`] connections, so that `--check` does not flap on small
//! samples (a fair selector then fails it about once in a thousand windows, as the significance
//! says). Each endpoint's share gets a Wilson score interval at the same confidence.
//!
//! The expected shares come from the rules when the caller read them ([`Rules`]: kube-proxy's
//! modes give every endpoint 1/N, and whoever reads other rules passes their probabilities);
//! otherwise they are equal among the endpoints the events show.
//!
//! An endpoint removed mid-window stops getting connections. The rules, when read at both
//! edges, say so; without them, the endpoint's silence since its last connection is compared
//! with its share (how unlikely that many misses in a row are), and Kubernetes says why (no
//! EndpointSlice lists it any more, or lists it terminating or not serving).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::analysis::{backend_report, causes, name_backend, service_report_of, totals, verdict};
use super::report::{Cause, Judgement, RandomJudgement, ServiceReport, SharesSource};
use super::window::{Observed, Window};
use super::{stats, Context, Mode};
use crate::dataplane::Dataplane;
use crate::events::decode::RANDOM;
use crate::events::Proto;
use crate::netfilter::model::{family_of, unspecified};
use crate::netfilter::NfService;

/// The p-value below which a random selection is uneven, and `1 -` the confidence of the share
/// intervals: one window in a thousand of a fair selector is judged uneven.
pub const SIGNIFICANCE: f64 = 0.001;

/// Connections every endpoint with a share must expect before a random selection is judged.
/// Below it the chi-square approximation of the counts' distribution is poor and a few
/// connections swing the verdict.
pub const MIN_EXPECTED: f64 = 10.0;

/// The endpoints of one random selection as its rules have them, each with the probability
/// that a new connection goes to it.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleShares {
    dataplane: Dataplane,
    /// Summing to 1 (or empty: a service without endpoints).
    shares: BTreeMap<SocketAddr, f64>,
}

/// Probabilities that cannot be a selection's.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum SharesError {
    #[error("endpoint {endpoint}: {share} is not a probability (a finite number >= 0)")]
    NotAShare { endpoint: SocketAddr, share: f64 },
    #[error("no endpoint has a probability above 0")]
    NoneChosen,
}

impl RuleShares {
    /// Endpoints with their probabilities (relative weights are fine: they are scaled to sum
    /// to 1; an endpoint listed twice, as in two slots of a `numgen` map, gets both).
    pub fn new(
        dataplane: Dataplane,
        shares: impl IntoIterator<Item = (SocketAddr, f64)>,
    ) -> Result<RuleShares, SharesError> {
        let mut summed: BTreeMap<SocketAddr, f64> = BTreeMap::new();
        for (endpoint, share) in shares {
            if !share.is_finite() || share < 0.0 {
                return Err(SharesError::NotAShare { endpoint, share });
            }
            *summed.entry(endpoint).or_default() += share;
        }
        let total: f64 = summed.values().sum();
        if total <= 0.0 || !total.is_finite() {
            return if summed.is_empty() {
                Ok(RuleShares {
                    dataplane,
                    shares: summed,
                })
            } else {
                Err(SharesError::NoneChosen)
            };
        }
        for share in summed.values_mut() {
            *share /= total;
        }
        Ok(RuleShares {
            dataplane,
            shares: summed,
        })
    }

    /// Every endpoint alike, as kube-proxy's nftables (`numgen random mod N`, one slot each) and
    /// iptables (probabilities 1/N, 1/(N-1), ..., 1 in turn) modes program them.
    pub fn equal(dataplane: Dataplane, endpoints: impl IntoIterator<Item = SocketAddr>) -> Self {
        RuleShares {
            dataplane,
            shares: equal_shares(endpoints),
        }
    }

    #[must_use]
    pub fn dataplane(&self) -> Dataplane {
        self.dataplane
    }

    /// The probability that a connection goes to `endpoint` (0 when the rules lack it).
    #[must_use]
    pub fn share(&self, endpoint: SocketAddr) -> f64 {
        self.shares.get(&endpoint).copied().unwrap_or(0.0)
    }

    fn lists(&self, endpoint: SocketAddr) -> bool {
        self.shares.contains_key(&endpoint)
    }
}

/// 1/N for each of N endpoints.
fn equal_shares(endpoints: impl IntoIterator<Item = SocketAddr>) -> BTreeMap<SocketAddr, f64> {
    let endpoints: BTreeSet<SocketAddr> = endpoints.into_iter().collect();
    let share = 1.0 / stats::real(endpoints.len().max(1) as u64);
    endpoints.into_iter().map(|e| (e, share)).collect()
}

/// The random selections' rules as the caller read them when the window opened and when it
/// closed, by (protocol, service address). A node port kube-proxy serves on every address of
/// the node is under the unspecified address (`0.0.0.0:30080`): it gives the shares of the
/// connections to that port on any address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub start: BTreeMap<(Proto, SocketAddr), RuleShares>,
    pub end: BTreeMap<(Proto, SocketAddr), RuleShares>,
}

impl Rules {
    /// One read of kube-proxy's netfilter Services ([`crate::netfilter::NetfilterRules`]) as
    /// shares by (protocol, address). An address both modes program (a node half-way through
    /// its migration) takes the first Service's, as [`crate::netfilter`] decides which mode a
    /// DNAT came from; a Service whose probabilities cannot be a selection's is left out, with
    /// a warning, and its events are judged against equal shares.
    #[must_use]
    pub fn shares_of(services: &[NfService]) -> BTreeMap<(Proto, SocketAddr), RuleShares> {
        let mut shares = BTreeMap::new();
        for service in services {
            let key = (service.proto, service.vip);
            if shares.contains_key(&key) {
                continue;
            }
            let endpoints = service.endpoints.iter().map(|e| (e.addr, e.probability));
            match RuleShares::new(service.dataplane(), endpoints) {
                Ok(rule) => {
                    shares.insert(key, rule);
                }
                Err(e) => tracing::warn!(
                    "balance: the {} rules of {} {}: {e}; judged against equal shares",
                    service.dataplane(),
                    service.proto,
                    service.vip
                ),
            }
        }
        shares
    }
}

/// A service's rules in one read: its address's, or those of a node port on every address.
fn rules_for(
    read: &BTreeMap<(Proto, SocketAddr), RuleShares>,
    (proto, vip): (Proto, SocketAddr),
) -> Option<&RuleShares> {
    read.get(&(proto, vip)).or_else(|| {
        let any = SocketAddr::new(unspecified(family_of(vip.ip())), vip.port());
        read.get(&(proto, any))
    })
}

/// Reports on every selected random selection: the services whose events were chosen at
/// random, and those in the rules, except the IPVS virtual services of `ipvs` (an address IPVS
/// serves is judged as IPVS).
pub(super) fn reports(
    window: &Window,
    ctx: &Context<'_>,
    ipvs: &BTreeSet<(Proto, SocketAddr)>,
) -> Vec<ServiceReport> {
    // A node port on every address has its events under the addresses they came to.
    let from_rules = ctx
        .rules
        .into_iter()
        .flat_map(|rules| rules.start.keys().chain(rules.end.keys()))
        .filter(|(_, vip)| !vip.ip().is_unspecified());
    let from_events = window
        .services
        .iter()
        .filter(|(_, observed)| observed.netfilter.is_some())
        .map(|(key, _)| key);
    let keys: BTreeSet<(Proto, SocketAddr)> = from_rules
        .chain(from_events)
        .filter(|key| !ipvs.contains(key))
        .copied()
        .collect();
    let empty = Observed::default();
    keys.into_iter()
        .filter_map(|key| {
            let observed = window.services.get(&key).unwrap_or(&empty);
            let service = RandomService::of(key, observed, ctx)?;
            let endpoints: Vec<SocketAddr> = service.endpoints.iter().copied().collect();
            ctx.selection
                .selects(key.0, key.1, &endpoints, ctx.index)
                .then(|| service.report(ctx))
        })
        .collect()
}

/// One random selection, before judgement: its events and rules.
struct RandomService<'a> {
    key: (Proto, SocketAddr),
    /// The rules' dataplane, else the events'.
    dataplane: Dataplane,
    observed: &'a Observed,
    /// Its rules at the window's opening and closing (`None`: not read, or not there).
    start: Option<&'a RuleShares>,
    end: Option<&'a RuleShares>,
    /// Every endpoint in the rules or the events.
    endpoints: BTreeSet<SocketAddr>,
}

impl<'a> RandomService<'a> {
    /// `None` when neither the rules nor the events have it as a random selection.
    fn of(
        key: (Proto, SocketAddr),
        observed: &'a Observed,
        ctx: &Context<'a>,
    ) -> Option<RandomService<'a>> {
        let start = ctx.rules.and_then(|rules| rules_for(&rules.start, key));
        let end = ctx.rules.and_then(|rules| rules_for(&rules.end, key));
        let dataplane = start
            .or(end)
            .map(RuleShares::dataplane)
            .or(observed.netfilter)?;
        let endpoints = [start, end]
            .into_iter()
            .flatten()
            .flat_map(|rules| rules.shares.keys())
            .chain(observed.backends.keys())
            .copied()
            .collect();
        Some(RandomService {
            key,
            dataplane,
            observed,
            start,
            end,
            endpoints,
        })
    }

    /// The rules it is judged by: the opening's; for a service added during the window, the
    /// closing's (as an IPVS service is judged by its first table read).
    fn rules(&self) -> Option<&'a RuleShares> {
        self.start.or(self.end)
    }

    /// Each endpoint's expected share, in `endpoints` order, and where they come from.
    fn shares(&self) -> (Vec<f64>, SharesSource) {
        if let Some(rules) = self.rules() {
            let shares = self.endpoints.iter().map(|&e| rules.share(e)).collect();
            return (shares, SharesSource::Rules);
        }
        // Without rules: the endpoints chosen in the window or just before it. One chosen only
        // after the close was not there to choose.
        let chosen = |e: &SocketAddr| {
            self.observed
                .backends
                .get(e)
                .is_some_and(|c| c.lead + c.new + c.reused > 0)
        };
        let equal = equal_shares(self.endpoints.iter().copied().filter(chosen));
        let shares = self
            .endpoints
            .iter()
            .map(|e| equal.get(e).copied().unwrap_or(0.0))
            .collect();
        (shares, SharesSource::Equal)
    }

    fn report(&self, ctx: &Context<'_>) -> ServiceReport {
        let (proto, _) = self.key;
        let backends = self
            .endpoints
            .iter()
            .map(|&addr| {
                let counts = self
                    .observed
                    .backends
                    .get(&addr)
                    .copied()
                    .unwrap_or_default();
                // No IPVS real server: no weight, no kernel counter to cross-check with.
                let mut report = backend_report(addr, counts, None, None);
                name_backend(&mut report, proto, ctx);
                report
            })
            .collect::<Vec<_>>();
        let totals = totals(&backends, self.observed);
        let (shares, source) = self.shares();
        let removals = self.membership(&shares, ctx);
        let mut report = ServiceReport {
            scheduler: RANDOM.to_owned(),
            causes: causes(&backends, removals, totals, ctx, None),
            ..service_report_of(
                self.key,
                self.dataplane,
                Mode::Random,
                totals,
                backends,
                ctx,
            )
        };
        let judgement = judge(&mut report, &shares, ctx.tolerance);
        report.random = Some(RandomJudgement {
            method: "chi-square",
            significance: SIGNIFICANCE,
            min_expected: MIN_EXPECTED,
            shares: source,
            judgement,
        });
        let beyond = match judgement {
            Judgement::TooFew => None,
            Judgement::Even => Some(false),
            Judgement::Uneven => Some(true),
        };
        report.verdict = verdict(beyond, &report.causes);
        report
    }

    /// The causes that come from the service's endpoints coming and going: from the rules
    /// when they were read at both edges, else from each endpoint's silence and Kubernetes.
    fn membership(&self, shares: &[f64], ctx: &Context<'_>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if ctx.rules.is_some() {
            match (self.start, self.end) {
                (None, Some(_)) => causes.push(Cause::new("service_added")),
                (Some(_), None) => causes.push(Cause::new("service_removed")),
                _ => {}
            }
        }
        for (&endpoint, &share) in self.endpoints.iter().zip(shares) {
            let last = self.observed.last.get(&endpoint);
            // Connections to the service since the endpoint's last one (all of them if none).
            let since = self.observed.connections - last.map_or(0, |l| l.sequence);
            let at = last.map(|l| ctx.clock.rfc3339(l.timestamp_ns));
            let silence = format!("no connection in the last {since} of the service");
            let chosen_in_window = self
                .observed
                .backends
                .get(&endpoint)
                .is_some_and(|c| c.new + c.reused > 0);
            if let (Some(start), Some(end)) = (self.start, self.end) {
                // The rules are what the kernel chooses from: they alone say.
                if start.lists(endpoint) && !end.lists(endpoint) {
                    causes.push(Cause {
                        backend: Some(endpoint),
                        at,
                        detail: Some(format!("not in the rules at the close; {silence}")),
                        ..Cause::new("backend_removed")
                    });
                } else if !start.lists(endpoint) && end.lists(endpoint) {
                    causes.push(Cause {
                        backend: Some(endpoint),
                        detail: Some("not in the rules at the open".into()),
                        ..Cause::new("backend_added")
                    });
                } else if !start.lists(endpoint) && !end.lists(endpoint) && chosen_in_window {
                    // The kernel only DNATs where the rules say: they had it in between.
                    causes.push(Cause {
                        backend: Some(endpoint),
                        at,
                        detail: Some(
                            "in neither read of the rules: added and removed during the window"
                                .into(),
                        ),
                        ..Cause::new("backend_added")
                    });
                }
                continue;
            }
            if self.rules().is_some() {
                // The service itself came or went: named above.
                continue;
            }
            let chance = stats::miss_probability(share, since);
            if share == 0.0 || chance >= SIGNIFICANCE {
                continue;
            }
            if let Some(why) = gone_from_kubernetes(self.key, endpoint, ctx) {
                causes.push(Cause {
                    backend: Some(endpoint),
                    at,
                    detail: Some(format!(
                        "{why}; {silence} (chance {chance:.1e} if it were still chosen)"
                    )),
                    ..Cause::new("backend_removed")
                });
            }
        }
        causes
    }
}

/// Why Kubernetes no longer has the Service send connections to `endpoint`, if it says so:
/// only when the index knows the Service (an index without it cannot tell).
fn gone_from_kubernetes(
    (proto, vip): (Proto, SocketAddr),
    endpoint: SocketAddr,
    ctx: &Context<'_>,
) -> Option<&'static str> {
    let index = ctx.index?;
    index.service_for(proto, vip)?;
    match index.endpoint_for(proto, endpoint) {
        None => Some("no EndpointSlice lists it"),
        Some(e) if e.terminating == Some(true) => Some("its EndpointSlice has it terminating"),
        Some(e) if e.serving == Some(false) => Some("its EndpointSlice has it not serving"),
        Some(_) => None,
    }
}

/// Fills in the figures of a random selection (counts against `shares`, per backend in the
/// report's order) and judges it.
fn judge(report: &mut ServiceReport, shares: &[f64], tolerance: f64) -> Judgement {
    let received: Vec<u64> = report.backends.iter().map(|b| b.received).collect();
    let total: u64 = received.iter().sum();
    // No rounds: the tolerance is the only slack per backend.
    let deviation = stats::deviation(&received, shares, &vec![0.0; shares.len()], tolerance);
    for (i, backend) in report.backends.iter_mut().enumerate() {
        let interval = stats::wilson_interval(backend.received, total, SIGNIFICANCE);
        backend.expected = Some(deviation.expected[i]);
        backend.expected_share = Some(shares[i]);
        backend.share = (total > 0).then(|| stats::real(backend.received) / stats::real(total));
        backend.share_low = interval.map(|(low, _)| low);
        backend.share_high = interval.map(|(_, high)| high);
        backend.relative_error = deviation.relative_error[i];
        // Off by more than the tolerance, and by more than chance explains.
        backend.beyond_tolerance = deviation.beyond[i]
            && interval.is_some_and(|(low, high)| shares[i] < low || shares[i] > high);
    }
    report.max_relative_error = deviation.max_relative_error;
    report.chi_square = deviation.chi_square;
    report.degrees_of_freedom = deviation.degrees_of_freedom;
    report.p_value = deviation.p_value;

    let impossible = received
        .iter()
        .zip(shares)
        .any(|(&count, &share)| share == 0.0 && count > 0);
    let fewest_expected = shares
        .iter()
        .filter(|&&share| share > 0.0)
        .map(|share| share * stats::real(total))
        .reduce(f64::min);
    if impossible {
        // Not chance: the rules never send connections there.
        Judgement::Uneven
    } else if fewest_expected.is_none_or(|e| e < MIN_EXPECTED) {
        Judgement::TooFew
    } else if deviation.p_value.is_some_and(|p| p < SIGNIFICANCE)
        && deviation.max_relative_error.is_some_and(|e| e > tolerance)
    {
        Judgement::Uneven
    } else {
        Judgement::Even
    }
}

#[cfg(test)]
mod tests;
