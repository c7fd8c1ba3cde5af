//! `loss`: a burst of connections into a one-page ring while the tracer is stopped; every
//! connection IPVS created must be delivered or counted lost.

use std::path::Path;

use anyhow::{bail, Result};

use super::figures::{bench_lines, field, write};
use super::guest::lab_run;
use super::Args;

pub(super) fn loss(args: &Args, dir: &Path) -> Result<bool> {
    let output = lab_run(args, dir, "loss", &format!("BURST={}\n", args.burst))?;
    let lines = bench_lines(&output, "loss");
    let [line] = lines.as_slice() else {
        bail!(
            "expected one `bench: loss` line from the script, got {}",
            lines.len()
        );
    };
    let (delivered, lost, conns) = (
        field(line, "delivered")?,
        field(line, "lost")?,
        field(line, "conns")?,
    );
    let exact = delivered + lost == conns;
    println!(
        "loss: {conns} connections (ipvsadm --stats Conns), {delivered} delivered + {lost} lost = {} \
         ({}), ring one page, tracer stopped during the burst",
        delivered + lost,
        if exact { "exact" } else { "NOT EXACT" }
    );
    let json = format!(
        "{{\n  \"bench\": \"loss\",\n  \"kernel\": \"{}\",\n  \"ring_size\": \"one page\",\n  \
         \"burst\": {},\n  \"conns\": {conns},\n  \"delivered\": {delivered},\n  \
         \"lost\": {lost},\n  \"exact\": {exact}\n}}\n",
        args.kernel, args.burst
    );
    write(dir, "loss.json", &json)?;
    Ok(exact)
}
