//! `who --history-dir DIR`: serve's history files read here, without serve (serve crashed, or
//! a copy of a node's disk).

use std::path::Path;

use anyhow::Context as _;

use super::{notice, Answer};
use crate::clock::WallClock;
use crate::history::{segment, Query};
use crate::output::json;

/// Answers `query` from the store in `dir`; the store's warnings (a damaged segment skipped)
/// go to stderr.
pub async fn answer(dir: &Path, query: &Query) -> anyhow::Result<Answer> {
    let owned_dir = dir.to_owned();
    let owned_query = query.clone();
    let found = tokio::task::spawn_blocking(move || segment::query_dir(&owned_dir, &owned_query))
        .await
        .context("the history reader failed")?
        .with_context(|| format!("reading the history in {}", dir.display()))?;
    for warning in &found.warnings {
        notice(&format!("ipvs-trace who: {warning}"));
    }
    // A recorded decision carries its Unix time as its timestamp: a zero offset prints it.
    let clock = WallClock::with_offset(0);
    let mut lines = Vec::with_capacity(found.decisions.len());
    let mut buffer = Vec::with_capacity(512);
    for decision in &found.decisions {
        buffer.clear();
        json::write_line(
            &mut buffer,
            &clock,
            &decision.event,
            &decision.names.names(),
            None,
        )
        .context("formatting a decision")?;
        let text = String::from_utf8_lossy(&buffer);
        lines.push(text.trim_end().to_owned());
    }
    Ok(Answer {
        lines,
        truncated: found.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::who::client::tests::temp_dir;
    use crate::cmd::who::line::Line;
    use crate::history::recorder::{HistoryRecorder, RecorderConfig};
    use crate::kube::Names;
    use crate::output::tests::{sample_events, seed_index, CLOCK};

    const NAMED: &str = include_str!("../../../tests/golden/events-named.jsonl");

    /// The sample events recorded by serve's recorder into a directory, as `trace -o json`
    /// printed them with names (tests/golden/events-named.jsonl).
    fn recorded(name: &str) -> std::path::PathBuf {
        let dir = temp_dir(name).join("history");
        let (mut recorder, _store) = HistoryRecorder::start(RecorderConfig {
            dir: Some(dir.clone()),
            ..RecorderConfig::default()
        })
        .expect("the recorder starts");
        let index = seed_index();
        for mut event in sample_events() {
            let names = Names::resolve(&index, &event);
            let unix_ns = i64::try_from(CLOCK.unix_ns(event.timestamp_ns)).unwrap();
            event.timestamp_ns = u64::try_from(unix_ns).unwrap();
            recorder.record(unix_ns, &event, &names);
        }
        let _summary = recorder.finish();
        dir
    }

    #[tokio::test]
    async fn reads_what_serve_recorded() {
        let dir = recorded("history");
        let query = Query {
            client: Some("10.245.97.12".parse().unwrap()),
            ..Query::default()
        };
        let found = answer(&dir, &query).await.expect("the history reads");
        assert!(!found.truncated);
        // Every line is the one trace printed for the decision: same contract, same names.
        let expected: Vec<_> = NAMED
            .lines()
            .filter(|l| {
                Line::parse(l)
                    .unwrap()
                    .client
                    .unwrap()
                    .starts_with("10.245.97.12:")
            })
            .collect();
        assert_eq!(found.lines, expected);

        let newest = Query {
            backend: Some("10.245.112.32:8080".parse().unwrap()),
            limit: 1,
            ..Query::default()
        };
        let found = answer(&dir, &newest).await.unwrap();
        assert!(found.truncated);
        assert_eq!(found.lines, [NAMED.lines().last().unwrap()]);
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_naming_it() {
        let dir = temp_dir("history-missing").join("none");
        let err = answer(&dir, &Query::default()).await.unwrap_err();
        assert!(
            format!("{err:#}").contains(&dir.display().to_string()),
            "{err:#}"
        );
    }
}
