//! One query string of the history API (`GET /v1/decisions?...`, what any local client of
//! serve's socket sends), through the parser serve uses. Whatever parses must write itself
//! back as a query string that parses to the same question: `who` sends what it parsed.

#![no_main]

use ipvs_trace::history::Query;
use libfuzzer_sys::fuzz_target;

/// 2026-12-07T14:03:00Z: relative times count back from a fixed now.
const NOW: i64 = 1_796_652_180_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(query) = Query::parse(text, NOW) {
        let again = Query::parse(&query.to_query_string(), NOW)
            .unwrap_or_else(|e| panic!("{text:?} parsed, its query string did not: {e}"));
        assert_eq!(again, query, "{text:?}");
    }
});
