//! The kernel's symbol table (`/proc/kallsyms`): whether a function a probe needs exists under
//! its exact name. The compiler may inline a static function away or rename a clone
//! (`tcp_state_transition.isra.0`); a kprobe can only attach to a name listed here.

use std::collections::HashSet;
use std::io;

const KALLSYMS: &str = "/proc/kallsyms";

/// Function names of the running kernel and its loaded modules.
#[derive(Debug, Default)]
pub struct Kallsyms {
    functions: HashSet<String>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms` (names are listed to everyone; only addresses need privileges).
    pub fn read() -> io::Result<Kallsyms> {
        Ok(Kallsyms::parse(&std::fs::read_to_string(KALLSYMS)?))
    }

    /// `ADDRESS TYPE NAME [MODULE]` lines; text symbols (`t`/`T`) only.
    #[must_use]
    pub fn parse(text: &str) -> Kallsyms {
        let functions = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (_, kind, name) = (fields.next()?, fields.next()?, fields.next()?);
                matches!(kind, "t" | "T").then(|| name.to_owned())
            })
            .collect();
        Kallsyms { functions }
    }

    #[must_use]
    pub fn has_function(&self, name: &str) -> bool {
        self.functions.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_symbols_by_exact_name() {
        let syms = Kallsyms::parse(
            "ffffffffc0a01000 t ip_vs_conn_new\t[ip_vs]\n\
             ffffffffc0a02000 t tcp_state_transition.isra.0\t[ip_vs]\n\
             ffffffffc0a03000 d ip_vs_conn_tab\t[ip_vs]\n\
             0000000000000000 T ip_vs_schedule\t[ip_vs]\n",
        );
        assert!(syms.has_function("ip_vs_conn_new"));
        assert!(syms.has_function("ip_vs_schedule"));
        assert!(
            !syms.has_function("tcp_state_transition"),
            "a renamed clone"
        );
        assert!(!syms.has_function("ip_vs_conn_tab"), "data, not text");
    }
}
