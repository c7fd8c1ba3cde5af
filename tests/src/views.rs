//! Typed views of a scenario's dumps, for the assertions. Each accessor panics with the
//! scenario's report when a dump is missing or does not parse: a test cannot go on without it.

use std::net::SocketAddr;

use crate::ipvsadm::{self, ConnEntry, Service, ServiceStats};
use crate::labnet::{self, ClientLine};
use crate::output::{Dump, ScenarioRun};
use crate::trace::{self, Event, Summary};

/// One `ipvs-trace trace` run of a scenario (the dumps `NAME.out`, `NAME.stderr`,
/// `NAME.status` written by `stop_trace`).
#[derive(Clone, Debug)]
pub struct Trace {
    pub events: Vec<Event>,
    pub summary: Summary,
    pub status: i32,
    pub stderr: String,
}

impl Trace {
    /// Events of one kind (`new`, `template`, `reused`, `no_dest`).
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.event == kind)
    }
}

impl ScenarioRun {
    /// The dump `name`, finished, or a panic with the report.
    #[must_use]
    pub fn dump(&self, name: &str) -> &Dump {
        match self.find(name) {
            Some(d) if d.status.is_some() => d,
            Some(_) => panic!("dump {name} was cut short\n{}", self.report()),
            None => panic!("no dump {name}\n{}", self.report()),
        }
    }

    /// The trace run `name`.
    #[must_use]
    pub fn trace(&self, name: &str) -> Trace {
        let stderr = self.dump(&format!("{name}.stderr")).text.clone();
        let status_text = &self.dump(&format!("{name}.status")).text;
        let status = status_text.trim().parse().unwrap_or_else(|_| {
            panic!("trace {name}: exit status {status_text:?} is not a number")
        });
        let events = trace::parse_events(&self.dump(&format!("{name}.out")).text)
            .unwrap_or_else(|e| panic!("trace {name}: {e}"));
        let summary = trace::parse_summary(&stderr)
            .unwrap_or_else(|e| panic!("trace {name} (exit status {status}): {e}"));
        Trace {
            events,
            summary,
            status,
            stderr,
        }
    }

    /// `ipvsadm -Lnc` (dump `conns`).
    #[must_use]
    pub fn conns(&self) -> Vec<ConnEntry> {
        self.conns_named("conns")
    }

    /// `ipvsadm -Lnc` of the dump `name` (`dump_ipvs TAG` names it `conns-TAG`).
    #[must_use]
    pub fn conns_named(&self, name: &str) -> Vec<ConnEntry> {
        ipvsadm::parse_conns(&self.dump(name).text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ipvsadm -Ln` (dump `rules`).
    #[must_use]
    pub fn rules(&self) -> Vec<Service> {
        ipvsadm::parse_rules(&self.dump("rules").text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ipvsadm -Ln --stats --exact` (dump `stats`).
    #[must_use]
    pub fn stats(&self) -> Vec<ServiceStats> {
        ipvsadm::parse_stats(&self.dump("stats").text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lines of the client run `tag` (dump `client-TAG`).
    #[must_use]
    pub fn client(&self, tag: &str) -> Vec<ClientLine> {
        labnet::parse_client_lines(&self.dump(&format!("client-{tag}")).text)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every client line of the scenario.
    #[must_use]
    pub fn all_clients(&self) -> Vec<ClientLine> {
        self.dumps_where(is_client_dump)
            .flat_map(|d| labnet::parse_client_lines(&d.text).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    /// The stats of service `proto vip`, or a panic.
    #[must_use]
    pub fn service_stats(&self, proto: &str, vip: SocketAddr) -> ServiceStats {
        ServiceStats::find(&self.stats(), proto, vip)
            .cloned()
            .unwrap_or_else(|| panic!("no {proto} {vip} in ipvsadm --stats\n{}", self.report()))
    }

    /// The rules of service `proto vip`, or a panic.
    #[must_use]
    pub fn service_rules(&self, proto: &str, vip: SocketAddr) -> Service {
        Service::find(&self.rules(), proto, vip)
            .cloned()
            .unwrap_or_else(|| panic!("no {proto} {vip} in ipvsadm -Ln\n{}", self.report()))
    }
}

/// `client-TAG` (not its `.stderr`).
#[must_use]
pub fn is_client_dump(name: &str) -> bool {
    name.starts_with("client-") && !name.ends_with(".stderr")
}

/// A trace's stdout dump (`NAME.out`; the suffix is lab.sh's, not a file extension).
#[must_use]
pub fn is_trace_dump(name: &str) -> bool {
    name.strip_suffix(".out").is_some()
}
