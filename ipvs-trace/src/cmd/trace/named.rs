//! Keeps the kernel-side name filter current: `--service`, `--namespace` and `--pod` name
//! Kubernetes objects, the probes compare addresses, so once a second, when the index changed,
//! the names are turned into addresses again and handed to the probes
//! ([`Probes::set_named`]). Until the names are synced the kernel lets every decision through
//! for the name filters and userspace alone applies them.

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

use super::notice;
use super::reattach::Probes;
use crate::filter::{Filter, NamedKeys};
use crate::kube::source::{Opened, Readiness};
use crate::kube::{self, SharedIndex};

/// How often the index is looked at for changes.
const EVERY: Duration = Duration::from_secs(1);

pub(super) struct NamedFilter {
    filter: Filter,
    index: SharedIndex,
    readiness: Readiness,
    /// The index generation last turned into addresses.
    done: Option<u64>,
    tick: Interval,
    /// The last refresh could not be applied: said once until one is.
    failing: bool,
    /// The names matched more than the kernel holds: said once.
    oversize_said: bool,
    /// The kernel's name test went on: said once (scripts wait for it).
    on_said: bool,
}

impl NamedFilter {
    /// `None` without a name filter or without names.
    pub(super) fn new(filter: &Filter, names: &Opened) -> Option<NamedFilter> {
        if !filter.uses_names() {
            return None;
        }
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Some(NamedFilter {
            filter: filter.clone(),
            index: names.index()?.clone(),
            readiness: names.readiness(),
            done: None,
            tick,
            failing: false,
            oversize_said: false,
            on_said: false,
        })
    }

    /// Turns the names into addresses again if the index changed since, and hands them to
    /// the probes (also after they were attached again: `Probes` keeps the last).
    pub(super) fn refresh(&mut self, probes: &mut Probes) {
        if !self.readiness.ready() {
            return;
        }
        let (generation, keys) = {
            let index = kube::read(&self.index);
            if self.done == Some(index.generation()) {
                return;
            }
            let keys = self
                .filter
                .named_addresses(&index)
                .map(|named| NamedKeys::from_addresses(&named));
            (index.generation(), keys)
        };
        if let Some(keys) = keys
            .as_ref()
            .filter(|keys| !keys.fit() && !std::mem::replace(&mut self.oversize_said, true))
        {
            tracing::warn!(
                "the name filters match {} VIPs and {} pod addresses, more than the kernel-side \
                 filter holds: they are applied in userspace only",
                keys.vips.len(),
                keys.ips.len()
            );
        }
        let counts = keys
            .as_ref()
            .filter(|keys| keys.fit())
            .map(|keys| (keys.vips.len(), keys.ips.len()));
        match probes.set_named(keys) {
            Ok(()) => {
                self.done = Some(generation);
                self.failing = false;
                if let Some((vips, ips)) = counts {
                    if !std::mem::replace(&mut self.on_said, true) {
                        notice(&format!(
                            "ipvs-trace: the kernel filters by name now: {vips} VIPs and \
                             NodePorts, {ips} pod addresses (kept current as the names change)"
                        ));
                    }
                }
            }
            Err(err) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        "updating the kernel-side name filter failed ({err:#}): the name filters \
                         are applied in userspace only until an update succeeds"
                    );
                }
            }
        }
    }
}

/// The next second of `named`; never, without it.
pub(super) async fn next(named: &mut Option<NamedFilter>) {
    match named {
        Some(named) => {
            named.tick.tick().await;
        }
        None => std::future::pending().await,
    }
}
