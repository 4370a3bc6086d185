//! Replays the fuzzing corpora (`proxy-core/fuzz/corpus/{request,response,chunked}`) through
//! the same checks the cargo-fuzz targets run (`proxy-core/fuzz/checks.rs`), so that every seed
//! and every past crash stays a regression test on stable Rust, without cargo-fuzz.

use std::panic;
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod checks;

/// Fewer seed files than this in a corpus means the corpus went missing, not that all is well.
const MIN_SEEDS: usize = 15;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} unreadable: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= MIN_SEEDS,
        "corpus {} has {} files, expected at least {MIN_SEEDS}",
        dir.display(),
        files.len()
    );
    files
}

/// Runs `check` on every file of the corpus and reports every failing file, not just the first.
fn replay(target: &str, check: fn(&[u8])) {
    let files = corpus(target);
    let mut failures = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("corpus file");
        if let Err(e) = panic::catch_unwind(|| check(&bytes)) {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
                .to_owned();
            failures.push(format!("{}: {msg}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} corpus files fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn request_corpus_holds() {
    replay("request", checks::request);
}

#[test]
fn response_corpus_holds() {
    replay("response", checks::response);
}

#[test]
fn chunked_corpus_holds() {
    replay("chunked", checks::chunked);
}

/// The checks are not vacuous: a known-good request and body pass, and a sabotaged decoder
/// outcome would be noticed (the corpora contain accepted inputs, not only rejected ones).
#[test]
fn corpora_contain_accepted_inputs() {
    use proxy_core::http1::{parse_request, parse_response, ChunkedDecoder};
    let accepted = |target: &str, ok: fn(&[u8]) -> bool| {
        corpus(target)
            .iter()
            .filter(|f| {
                let bytes = std::fs::read(f).expect("corpus file");
                // A parser panic is reported by the replay tests; here it only does not count.
                panic::catch_unwind(|| ok(&bytes)).unwrap_or(false)
            })
            .count()
    };
    let requests = accepted("request", |b| matches!(parse_request(b), Ok(Some(_))));
    let responses = accepted("response", |b| matches!(parse_response(b), Ok(Some(_))));
    let bodies = accepted("chunked", |b| {
        let mut d = ChunkedDecoder::new();
        let mut rest = b;
        while let Ok(r) = d.decode(rest) {
            rest = &rest[r.consumed..];
            if r.done || r.consumed == 0 {
                break;
            }
        }
        d.is_done()
    });
    assert!(requests >= 10, "only {requests} accepted request seeds");
    assert!(responses >= 8, "only {responses} accepted response seeds");
    assert!(bodies >= 8, "only {bodies} accepted chunked seeds");
}
