//! Scheduling that found no real server: event `no_dest`.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use ipvs_trace_common::{event::valid, EventKind};

use crate::{
    emit,
    kernel::KPtr,
    maps::{offset, SchedArgs, SCHED_ARGS},
};

/// Key of an `ip_vs_schedule` call in flight: CPU and thread id.
///
/// IPVS schedules in softirq context, where the "current" task is whatever was interrupted — on
/// idle CPUs that is pid 0 on every CPU at once — so the thread id alone would collide across
/// CPUs. Softirqs do not nest on one CPU, so (cpu, tid) is unique for the call's duration.
fn call_key() -> u64 {
    // SAFETY: plain helper calls without arguments.
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() });
    let tid = bpf_get_current_pid_tgid() & 0xffff_ffff;
    (cpu << 32) | tid
}

/// Entry of
/// `struct ip_vs_conn *ip_vs_schedule(struct ip_vs_service *svc, struct sk_buff *skb,
///     struct ip_vs_proto_data *pd, int *ignored, struct ip_vs_iphdr *iph)`
/// (`net/netfilter/ipvs/ip_vs_core.c`, global, not exported; checked on Debian 6.1 and 6.12).
/// Saves the arguments the return probe needs.
#[kprobe]
pub fn ip_vs_schedule(ctx: ProbeContext) -> u32 {
    let _ = try_ip_vs_schedule(&ctx);
    0
}

fn try_ip_vs_schedule(ctx: &ProbeContext) -> Option<()> {
    let args = SchedArgs {
        svc: ctx.arg::<u64>(0)?,
        skb: ctx.arg::<u64>(1)?,
        ignored: ctx.arg::<u64>(3)?,
        iph: ctx.arg::<u64>(4)?,
    };
    SCHED_ARGS.insert(call_key(), args, 0).ok()
}

/// Return of `ip_vs_schedule`. NULL with `*ignored == 0` means the service was to be scheduled
/// but its scheduler returned no destination (all real servers gone, weight 0, or overloaded);
/// NULL with `*ignored != 0` is a packet IPVS chose not to schedule (not our business).
#[kretprobe]
pub fn ip_vs_schedule_ret(ctx: RetProbeContext) -> u32 {
    let key = call_key();
    // SAFETY: the value is copied out before the entry is removed below.
    let args = unsafe { SCHED_ARGS.get(key) }.copied();
    let _ = SCHED_ARGS.remove(key);
    let cp: *const u8 = ctx.ret();
    if let (Some(args), true) = (args, cp.is_null()) {
        let _ = no_dest(&ctx, &args);
    }
    0
}

fn no_dest(ctx: &RetProbeContext, args: &SchedArgs) -> Option<()> {
    let ignored = KPtr::new(args.ignored as *const u8)?.read::<i32>(0)?;
    if ignored != 0 {
        return None;
    }
    let svc = KPtr::new(args.svc as *const u8)?;
    let iph = KPtr::new(args.iph as *const u8)?;
    let skb = KPtr::new(args.skb as *const u8)?;
    emit::record(ctx, EventKind::NoDest, |event| {
        // The addresses the client used, as IPVS parsed them (for a fwmark service the
        // service has no address of its own).
        iph.bytes(offset!(iph_saddr), &mut event.client_addr)?;
        iph.bytes(offset!(iph_daddr), &mut event.vip_addr)?;
        event.af = svc.read::<u16>(offset!(svc_af))?;
        event.daf = event.af;
        event.protocol = svc.read::<u16>(offset!(svc_protocol))?;
        event.vip_port = svc.be16(offset!(svc_port))?;
        // Ports from the transport header, which starts `iph->len` bytes after skb->data.
        let ports = skb.ptr(offset!(skb_data)).and_then(|data| {
            let l4 = iph.read::<i32>(offset!(iph_len))?;
            data.read::<[u16; 2]>(u32::try_from(l4).ok()?)
        });
        if let Some([sport, dport]) = ports {
            event.client_port = u16::from_be(sport);
            event.vip_port = u16::from_be(dport);
            event.valid |= valid::CLIENT_PORT;
        }
        emit::fill_scheduler(event, svc);
        emit::fill_netns(event, svc, offset!(svc_ipvs));
        Some(())
    });
    Some(())
}
