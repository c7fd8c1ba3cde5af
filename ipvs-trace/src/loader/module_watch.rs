//! Whether the ip_vs module the probes were attached to is still the one loaded.
//!
//! A kprobe on a module function lives as long as that load of the module: when ip_vs is
//! unloaded the kernel disarms it (the perf event stays open and never fires again), and a
//! module loaded again is new code at new addresses, with new BTF, that no old probe points
//! at. `serve` runs for months, and kube-proxy restarts, a mode switch or a node upgrade unload
//! and reload ip_vs under it: it must notice, and attach again.
//!
//! One load of the module is told from the next by the inode number of `/sys/module/ip_vs`.
//! sysfs (kernfs) numbers its nodes with a cyclic allocator, so the directory of a module
//! loaded again gets a number not used before: an unload and a reload between two polls is
//! still seen. The address of the module's code (`/proc/kallsyms`, `sections/.text`) is no such
//! identity (the module area can hand the same place to the same module again, and kallsyms is
//! megabytes to read every second). A poll is one `stat` and one read of a 5-byte file.
//!
//! Whether the load is complete is `/sys/module/ip_vs/initstate` (`coming` while the module's
//! init runs, `live`, `going` while it is unloaded); a built-in ip_vs has the directory (for
//! its parameters) without `initstate`, and never goes.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

/// Where sysfs shows the loaded ip_vs.
const IP_VS_MODULE: &str = "/sys/module/ip_vs";

/// One load of the module (the inode number of its sysfs directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleId(u64);

/// The module as one look at sysfs finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// Not loaded, or being unloaded.
    Absent,
    /// Being loaded: its init function runs (its functions exist, its netlink family may not
    /// yet).
    Coming,
    /// Loaded (or built in).
    Live(ModuleId),
}

/// Where the state of ip_vs is read: sysfs, or a test's script of states.
pub trait ModuleSource {
    fn state(&self) -> ModuleState;
}

/// The running kernel's `/sys/module/ip_vs`.
#[derive(Clone, Debug)]
pub struct SysModule {
    dir: PathBuf,
}

impl SysModule {
    #[must_use]
    pub fn ip_vs() -> SysModule {
        SysModule {
            dir: PathBuf::from(IP_VS_MODULE),
        }
    }
}

impl ModuleSource for SysModule {
    fn state(&self) -> ModuleState {
        let inode = || fs::metadata(&self.dir).ok().map(|meta| meta.ino());
        let Some(before) = inode() else {
            return ModuleState::Absent;
        };
        let state = match fs::read_to_string(self.dir.join("initstate")) {
            Ok(text) => match text.trim() {
                "live" => ModuleState::Live(ModuleId(before)),
                "coming" => ModuleState::Coming,
                _ => ModuleState::Absent,
            },
            // Built in (no initstate), unless the directory went meanwhile (checked below).
            Err(err) if err.kind() == ErrorKind::NotFound => ModuleState::Live(ModuleId(before)),
            // Unreadable for another reason: the directory is there, so take it as loaded.
            Err(_) => ModuleState::Live(ModuleId(before)),
        };
        // The state must be of the directory whose number it carries: a module that went (or
        // went and came back) between the two reads is read again at the next poll.
        match inode() {
            Some(after) if after == before => state,
            Some(_) => ModuleState::Coming,
            None => ModuleState::Absent,
        }
    }
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do: still the load the probes are attached to, or still no module to
    /// attach to.
    Unchanged,
    /// The load the probes were attached to is gone: detach. `reloaded`: another load is
    /// already there (or coming), the unload and the reload fell between two polls.
    Lost { reloaded: bool },
    /// Detached, and ip_vs is loaded: attach now.
    Attach,
}

/// Follows ip_vs from poll to poll, against the load the probes were attached to.
#[derive(Debug)]
pub struct ModuleWatch<S = SysModule> {
    source: S,
    /// The state when the probes were attached (`None`: detached).
    attached: Option<ModuleState>,
}

impl<S: ModuleSource> ModuleWatch<S> {
    /// A watch with nothing attached yet.
    pub fn new(source: S) -> ModuleWatch<S> {
        ModuleWatch {
            source,
            attached: None,
        }
    }

    /// The state now, as [`ModuleWatch::attached`] wants it: read just before loading the
    /// probes, so that a module swapped while they load is noticed at the next poll.
    pub fn state(&self) -> ModuleState {
        self.source.state()
    }

    /// The probes are attached to the module as it was in `state`.
    pub fn attached(&mut self, state: ModuleState) {
        self.attached = Some(state);
    }

    /// Looks at the module once.
    pub fn poll(&mut self) -> Step {
        let now = self.source.state();
        let Some(at) = self.attached else {
            return match now {
                ModuleState::Live(_) => Step::Attach,
                ModuleState::Absent | ModuleState::Coming => Step::Unchanged,
            };
        };
        match (at, now) {
            (ModuleState::Live(then), ModuleState::Live(id)) if then == id => Step::Unchanged,
            // Attached while it was coming (a start without --wait does not wait for init):
            // the load it completes is that one.
            (ModuleState::Coming, ModuleState::Coming)
            // Started without it (a node of kube-proxy's netfilter modes, traced through
            // nf_nat): still without it. Once it loads, the start is made again with it.
            | (ModuleState::Absent, ModuleState::Absent) => Step::Unchanged,
            (ModuleState::Coming, ModuleState::Live(_)) => {
                self.attached = Some(now);
                Step::Unchanged
            }
            (_, ModuleState::Absent) => {
                self.attached = None;
                Step::Lost { reloaded: false }
            }
            (_, ModuleState::Live(_) | ModuleState::Coming) => {
                self.attached = None;
                Step::Lost { reloaded: true }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    const A: ModuleState = ModuleState::Live(ModuleId(7));
    const B: ModuleState = ModuleState::Live(ModuleId(9));
    const ABSENT: ModuleState = ModuleState::Absent;
    const COMING: ModuleState = ModuleState::Coming;

    /// States handed out in order; the last one repeats.
    struct Script(RefCell<VecDeque<ModuleState>>);

    impl ModuleSource for Script {
        fn state(&self) -> ModuleState {
            let mut states = self.0.borrow_mut();
            if states.len() > 1 {
                states.pop_front().expect("a state")
            } else {
                *states.front().expect("a state")
            }
        }
    }

    /// A watch attached to `at`, then `polls` polls: what each one said.
    fn steps(at: ModuleState, polls: &[ModuleState]) -> Vec<Step> {
        let mut watch = ModuleWatch::new(Script(RefCell::new(polls.iter().copied().collect())));
        watch.attached(at);
        polls.iter().map(|_| watch.poll()).collect()
    }

    const LOST: Step = Step::Lost { reloaded: false };
    const RELOADED: Step = Step::Lost { reloaded: true };
    use Step::{Attach, Unchanged};

    #[test]
    fn the_same_load_is_unchanged() {
        assert_eq!(steps(A, &[A, A, A]), [Unchanged; 3]);
    }

    #[test]
    fn an_unload_is_lost_once_then_waits_until_the_module_is_back() {
        assert_eq!(
            steps(A, &[A, ABSENT, ABSENT, COMING, B, B]),
            [Unchanged, LOST, Unchanged, Unchanged, Attach, Attach]
        );
    }

    #[test]
    fn an_unload_and_reload_between_two_polls_is_seen() {
        assert_eq!(steps(A, &[B]), [RELOADED]);
        assert_eq!(steps(A, &[COMING, B]), [RELOADED, Attach]);
    }

    #[test]
    fn reattached_it_follows_the_new_load() {
        let mut watch = ModuleWatch::new(Script(RefCell::new([A, ABSENT, B, B, ABSENT].into())));
        watch.attached(A);
        assert_eq!(watch.poll(), Unchanged);
        assert_eq!(watch.poll(), LOST);
        assert_eq!(watch.poll(), Attach);
        watch.attached(B);
        assert_eq!(watch.poll(), Unchanged);
        assert_eq!(watch.poll(), LOST);
    }

    #[test]
    fn attached_while_coming_adopts_the_load_it_completes() {
        assert_eq!(
            steps(COMING, &[COMING, A, A, B]),
            [Unchanged, Unchanged, Unchanged, RELOADED]
        );
        assert_eq!(steps(COMING, &[ABSENT]), [LOST]);
    }

    #[test]
    fn nothing_attached_attaches_once_live() {
        let mut watch = ModuleWatch::new(Script(RefCell::new([ABSENT, COMING, A].into())));
        assert_eq!(
            [watch.poll(), watch.poll(), watch.poll()],
            [Unchanged, Unchanged, Attach]
        );
    }

    /// sysfs as a directory: live, coming, going, built in, absent, replaced.
    #[test]
    fn sys_module_reads_initstate_and_the_inode() {
        let root = std::env::temp_dir().join(format!("ipvs-trace-module-{}", std::process::id()));
        let dir = root.join("ip_vs");
        fs::create_dir_all(&dir).expect("a temporary directory");
        let source = SysModule { dir: dir.clone() };
        let id = ModuleState::Live(ModuleId(fs::metadata(&dir).expect("stat").ino()));
        assert_eq!(source.state(), id, "built in: no initstate");
        for (text, want) in [("live\n", id), ("coming\n", COMING), ("going\n", ABSENT)] {
            fs::write(dir.join("initstate"), text).expect("writing initstate");
            assert_eq!(source.state(), want, "{text:?}");
        }
        fs::write(dir.join("initstate"), "live\n").expect("writing initstate");
        // Another directory under the same name: another load (a new inode, the old one
        // still held by `keep` so that it cannot be reused at once).
        let keep = root.join("old");
        fs::rename(&dir, &keep).expect("renaming");
        assert_eq!(source.state(), ABSENT);
        fs::create_dir(&dir).expect("a new directory");
        fs::write(dir.join("initstate"), "live\n").expect("writing initstate");
        let again = source.state();
        assert!(
            matches!(again, ModuleState::Live(_)) && again != id,
            "{again:?} vs {id:?}"
        );
        fs::remove_dir_all(&root).expect("cleaning up");
    }
}
