//! One history segment file (`--history-dir`, `*.ipvsh`), as a damaged disk, a crash or another
//! program may leave it, read by the offline reader `who --history-dir` uses (`query_dir`).
//! Whatever the bytes, reading must not panic, loop or allocate beyond the frame limits, and
//! an answer holds at most `limit` decisions, oldest first.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use ipvs_trace::history::segment::query_dir;
use ipvs_trace::history::Query;
use libfuzzer_sys::fuzz_target;

/// A directory of this process holding the one segment under test.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("ipvs-trace-fuzz-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the fuzz directory");
    dir
});

/// Questions that read every block, one key of each kind, and a time window.
static QUERIES: LazyLock<Vec<Query>> = LazyLock::new(|| {
    [
        "limit=50",
        "client=10.0.0.1",
        "backend=10.1.0.1:8080&limit=5",
        "pod=ns-1/pod-1",
        "service=ns-1/svc-1:http",
        "since=2026-11-26T17:12:52Z&until=2026-11-26T17:13:52Z",
    ]
    .iter()
    .map(|text| Query::parse(text, 0).expect("the fuzz target's queries parse"))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let path = DIR.join("00000000000000000000-0000000000000000.ipvsh");
    std::fs::write(&path, data).expect("writing the segment under test");
    for query in QUERIES.iter() {
        let answer = query_dir(&DIR, query).expect("a readable directory answers");
        assert!(answer.decisions.len() <= query.limit);
        assert!(answer
            .decisions
            .windows(2)
            .all(|w| w[0].unix_ns <= w[1].unix_ns));
        assert!(answer.decisions.iter().all(|d| query.matches(d)));
    }
});
