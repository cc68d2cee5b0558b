//! Every lab file in `tests/bad-labs/NAME.toml` must be rejected with exactly the problems
//! written in `tests/bad-labs/NAME.err`. Run with `UPDATE_EXPECT=1` to rewrite the `.err`
//! files after a deliberate change to the messages, then review the diff. A bad lab that is
//! accepted fails the test either way; its outcome is never blessed.

use std::fs;
use std::path::{Path, PathBuf};

const DIR: &str = "tests/bad-labs";

fn cases(extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(DIR)
        .expect("reading tests/bad-labs")
        .map(|entry| entry.expect("listing tests/bad-labs").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_bad_lab_is_rejected_with_its_expected_problems() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let labs = cases("toml");
    assert!(
        labs.len() >= 30,
        "the corpus shrank to {} cases",
        labs.len()
    );
    let mut failures = Vec::new();
    for lab in &labs {
        let expected_path = lab.with_extension("err");
        let actual = match reclab::spec::load(lab) {
            Ok(spec) => {
                // Never written to the .err file, even under UPDATE_EXPECT: a bad lab that is
                // accepted is a regression in the validator, not a new expectation.
                failures.push(format!(
                    "{}\n  accepted, but every lab in {DIR} must be rejected:\n{}",
                    lab.display(),
                    indent(&format!("{spec:#?}"))
                ));
                continue;
            }
            Err(err) => format!("{err}\n"),
        };
        if update {
            fs::write(&expected_path, &actual).expect("writing the expected problems");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            format!(
                "(missing {}; run with UPDATE_EXPECT=1)\n",
                expected_path.display()
            )
        });
        if actual != expected {
            failures.push(format!(
                "{}\n  expected:\n{}  actual:\n{}",
                lab.display(),
                indent(&expected),
                indent(&actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad labs gave other problems than expected (UPDATE_EXPECT=1 rewrites them):\n\n{}",
        failures.len(),
        labs.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expected_problem_file_has_its_lab() {
    for err in cases("err") {
        assert!(
            err.with_extension("toml").exists(),
            "{} has no lab file next to it; delete it",
            err.display()
        );
    }
}

#[test]
fn a_missing_lab_file_says_so() {
    let err = reclab::spec::load(Path::new("tests/bad-labs/does-not-exist.toml")).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    let message = err.to_string();
    assert!(
        message.starts_with("tests/bad-labs/does-not-exist.toml: cannot read the lab file: "),
        "{message}"
    );
    assert!(
        message.ends_with("; check the path and its permissions"),
        "{message}"
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}
