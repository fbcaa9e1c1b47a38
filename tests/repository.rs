//! The repository stands on its own: tests read only what is inside it, every recorded
//! fixture says what it is, and the text speaks of the project, not of how it was made.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (relative to the clone) whose name ends in one of `exts`.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if exts.iter().any(|x| path.extension().is_some_and(|e| e == *x)) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn text_files() -> Vec<PathBuf> {
    let mut all = files("src", &["rs"]);
    all.extend(files("tests", &["rs", "md"]));
    all.extend(files("queries", &["sql"]));
    all.extend(files("templates", &["html"]));
    all.extend(files("static", &["js", "css"]));
    all.extend(files("docs", &["md"]));
    all.extend(["README.md", "BENCHMARKS.md", "Cargo.toml", "scripts/test", ".ci/run"].map(|f| root().join(f)));
    all
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// `path` relative to `dir`, with `..` and `.` taken away lexically.
fn resolve(dir: &Path, path: &str) -> PathBuf {
    let mut out = dir.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn no_test_reads_outside_the_repository() {
    let root = root();
    let mut offenders = Vec::new();
    for f in files("tests", &["rs"]).into_iter().chain(files("src", &["rs"])) {
        let text = std::fs::read_to_string(&f).unwrap();
        let dir = f.parent().unwrap();
        for (n, line) in text.lines().enumerate() {
            // Every relative path in a string literal, resolved from the file's folder (as
            // include_str! does) or from the clone (as the tests' fixture paths are).
            let leaves = line.split('"').skip(1).step_by(2).filter(|lit| lit.starts_with("../")).any(|lit| {
                let from_file = resolve(dir, lit);
                let from_root = resolve(&root, lit);
                !from_file.starts_with(&root) || (!from_file.exists() && !from_root.starts_with(&root))
            });
            if leaves || line.contains(&["..", "shared", "fixtures"].join("/")) {
                offenders.push(format!("{}:{}: {}", relative(&f), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "paths that leave the clone:\n{}", offenders.join("\n"));
}

#[test]
fn every_recorded_fixture_has_a_readme_and_its_bodies() {
    let recorded = root().join("tests/fixtures/recorded");
    let mut checked = 0;
    for e in std::fs::read_dir(&recorded).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = relative(&dir);
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
        assert!(
            readme.contains("What flowscope must make of it"),
            "{name}: its README says what flowscope makes of it"
        );
        let bodies = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|x| x == "pb"));
        assert!(bodies.count() > 0, "{name} holds recorded bodies");
        checked += 1;
    }
    assert_eq!(checked, 4, "aio-pika-rpc, pika-dlx, sqs-boto3 and kafka-confluent");
}

// The words, spelt in pieces so that this file does not speak of them itself.
const PERIOD: &str = concat!("sess", "ion");
const TRACKER: &str = concat!("iss", "ue");
const DOCUMENT: &str = concat!("bri", "ef");

/// Words that only make sense to someone who was there: the work period a change was
/// made in, a tracker's numbers, the document that asked for it. A reader has only the
/// repository; dates and commits say when.
fn speaks_of_how_it_was_made(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    const ORDINALS: &[&str] = &[
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "this",
        "last",
        "previous",
        "next",
        "earlier",
        "later",
    ];
    let period = ORDINALS.iter().any(|o| lower.contains(&format!("{o} {PERIOD}")));
    let tracker = lower.match_indices(TRACKER).any(|(i, _)| {
        let rest = lower[i + TRACKER.len()..].trim_start_matches([' ', '#']);
        rest.starts_with(|c: char| c.is_ascii_digit())
    });
    let document = lower.contains(&format!("the {DOCUMENT}")) || lower.contains(&format!("{DOCUMENT}'s"));
    period || tracker || document
}

#[test]
fn the_text_speaks_only_of_the_project() {
    let (period, tracker, document) = (PERIOD, TRACKER, DOCUMENT);
    for (line, says) in [
        (format!("(BENCHMARKS.md, thirteenth {period})"), true),
        (format!("see {tracker} 12"), true),
        (format!("{tracker} #7 says"), true),
        (format!("the {document}'s 12.4"), true),
        (format!("{period}Storage.setItem('flowscope-scroll')"), false),
        ("measured 2026-11-24 on a55af9c".to_owned(), false),
        (format!("{tracker}s a request"), false),
    ] {
        assert_eq!(speaks_of_how_it_was_made(&line), says, "{line}");
    }
    let mut offenders = Vec::new();
    for f in text_files() {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for (n, line) in text.lines().enumerate() {
            if speaks_of_how_it_was_made(line) {
                offenders.push(format!("{}:{}: {}", relative(&f), n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "text a reader of the repository cannot follow:\n{}", offenders.join("\n"));
}
