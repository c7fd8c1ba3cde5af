//! The lab's public contract, checked in real guests: what the script finds in the VM, how its
//! output and status come back, and what happens when it hangs. Both kernels boot at once, as
//! the end-to-end tests do.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use xtask::lab::{self, GuestFailure, Kernel, LabRun};

/// Checks the guest from the inside; each check prints `ok <what>` or `FAIL <what>`.
const CONTRACT: &str = r#"
check() { what=$1; shift; if "$@" >/dev/null 2>&1; then echo "ok $what"; else echo "FAIL $what"; fi; }
echo "release $(uname -r)"
check root [ "$(id -u)" = 0 ]
check stdin-null [ "$(readlink /proc/self/fd/0)" = /dev/null ]
for m in ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh veth dummy; do
    check "module-$m" [ -d /sys/module/$m ]
done
check no-dummy0 [ ! -e /sys/class/net/dummy0 ]
# Debian 5.10 builds its modules without BTF; every later lab kernel has it.
case $(uname -r) in
5.10.*) check ip_vs-no-btf [ ! -e /sys/kernel/btf/ip_vs ] ;;
*) check ip_vs-btf [ -e /sys/kernel/btf/ip_vs ] ;;
esac
check kallsyms grep -qw ip_vs_conn_new /proc/kallsyms
check lo-up sh -c '/sbin/ip -o link show lo | grep -q "<LOOPBACK,UP"'
for fs in proc sysfs devtmpfs tracefs debugfs bpf; do
    check "mount-$fs" grep -q " $fs " /proc/mounts
done
check tracing [ -e /sys/kernel/tracing/kprobe_events ]
check ipvs-trace [ -x /usr/bin/ipvs-trace ]
check lab-net [ -x /usr/bin/lab-net ]
check iproute2-netns sh -c '/sbin/ip netns add t && /sbin/ip netns exec t /sbin/ip link show lo'
check veth /sbin/ip link add v0 type veth peer name v1
check ipvsadm ipvsadm -A -t 10.0.0.1:80 -s rr
check nobody grep -q '^nobody:x:65534:65534:' /etc/passwd
check extra-file [ "$(cat /lab/extra/hello.txt)" = "hello from the host" ]
check unload /lab/unload-ipvs.sh
check ip_vs-gone [ ! -d /sys/module/ip_vs ]
check conntrack-stays [ -d /sys/module/nf_conntrack ]
check reload /lab/load-ipvs.sh
check ip_vs-back [ -d /sys/module/ip_vs ]
echo "to stderr" >&2
printf 'no newline at the end'
exit 3
"#;

fn scratch(name: &str) -> PathBuf {
    let dir = xtask::paths::lab_dir()
        .join("test-scratch")
        .join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

#[test]
fn every_kernel_honours_the_contract_in_parallel() {
    let dir = scratch("contract");
    let script = dir.join("contract.sh");
    fs::write(&script, CONTRACT).unwrap();
    let extra = dir.join("hello.txt");
    fs::write(&extra, "hello from the host").unwrap();
    let extra_files = [(extra, "/lab/extra/hello.txt".to_owned())];

    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = Kernel::ALL
            .map(|kernel| {
                let run = LabRun {
                    kernel,
                    script: &script,
                    extra_files: &extra_files,
                    stream: false,
                    timeout: Duration::from_mins(5),
                    icount: false,
                };
                (kernel, scope.spawn(move || lab::run(&run)))
            })
            .into_iter()
            .collect();
        handles
            .into_iter()
            .map(|(kernel, handle)| (kernel, handle.join().expect("lab thread")))
            .collect()
    });

    for (kernel, result) in outputs {
        let output = result.unwrap_or_else(|err| panic!("{kernel}: {err:?}"));
        let out = &output.script_output;
        assert_eq!(output.status, 3, "{kernel}:\n{out}");
        let release = out
            .lines()
            .find_map(|l| l.strip_prefix("release "))
            .unwrap_or_else(|| panic!("{kernel}: no release line:\n{out}"));
        assert!(
            release.starts_with(&format!("{kernel}.")),
            "{kernel} booted {release}"
        );
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(failed.is_empty(), "{kernel}: {failed:?}\n{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            34,
            "{kernel}:\n{out}"
        );
        assert!(
            out.contains("\nto stderr\n"),
            "{kernel}: stderr missing:\n{out}"
        );
        assert!(
            out.ends_with("\nno newline at the end\n"),
            "{kernel}: unterminated last line lost:\n{out}"
        );
        assert!(output.console.contains("@@LAB-SCRIPT-BEGIN@@"));
        assert!(
            !out.contains("@@LAB-SCRIPT"),
            "{kernel}: marker leaked into the output"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hanging_script_is_cut_by_the_timeout() {
    let dir = scratch("timeout");
    let script = dir.join("hang.sh");
    fs::write(&script, "echo started\nsleep 1000\n").unwrap();
    let err = lab::run(&LabRun {
        kernel: Kernel::V6_1,
        script: &script,
        extra_files: &[],
        stream: false,
        timeout: Duration::from_secs(40),
        icount: false,
    })
    .expect_err("a script sleeping past the timeout must fail");
    let failure = err
        .downcast_ref::<GuestFailure>()
        .unwrap_or_else(|| panic!("not a guest failure: {err:?}"));
    assert!(
        failure.reason.contains("did not finish within 40 s"),
        "{}",
        failure.reason
    );
    assert!(
        failure.output.script_output.contains("started"),
        "output before the hang is kept: {:?}",
        failure.output
    );
    assert!(err.to_string().contains("===== last console lines"));
    fs::remove_dir_all(&dir).unwrap();
}
