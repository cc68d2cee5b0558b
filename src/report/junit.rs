//! The JUnit XML report: one `<testsuite>` per drill, one `<testcase>` per check, for CI systems.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, Result};
use regex::Regex;

use super::{DrillReport, opt_human, opt_human_signed};
use crate::verify::Status;

/// The `skipped` attribute with its count.
static SKIPPED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#" skipped="\d+""#).expect("a valid regex"));

/// One `<testsuite>` for the drill, one `<testcase>` per check (class `reclab.LAB.VM`).
pub fn render_junit(report: &DrillReport) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

    let mut suite = TestSuite::new(format!("reclab drill {} (run {})", report.lab, report.run));
    suite.set_time(
        Duration::try_from(report.finished_at.duration_since(report.started_at))
            .unwrap_or_default(),
    );
    suite.add_property(("run", report.run.as_str()));
    suite.add_property((
        "requested_moment",
        report
            .at
            .map(crate::base::when::for_people_utc)
            .unwrap_or_else(|| "latest".into())
            .as_str(),
    ));
    suite.add_property(("result", report.result.label()));
    suite.add_property(("recovery_time", opt_human(report.recovery_time).as_str()));
    suite.add_property(("data_age", opt_human_signed(report.data_age).as_str()));
    for check in &report.checks {
        let mut status = match check.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if check.status != Status::Pass {
            let message = match (&check.expected, &check.got) {
                (Some(e), Some(g)) => format!("expected {e}, got {g}"),
                (None, Some(g)) => g.clone(),
                (Some(e), None) => format!("expected {e}"),
                (None, None) => "failed".into(),
            };
            status.set_message(message);
            status.set_type(check.kind.as_str());
            let mut description = check.details.join("\n");
            if let Some(tail) = &check.output_tail {
                let _ = write!(description, "\n\noutput (end):\n{tail}");
            }
            if !description.trim().is_empty() {
                status.set_description(description.trim().to_string());
            }
        }
        let mut case = TestCase::new(check.name.as_str(), status);
        case.set_classname(format!("reclab.{}.{}", report.lab, check.vm));
        case.set_time(check.duration);
        if let Some(tail) = &check.output_tail {
            case.set_system_out(tail.as_str());
        }
        suite.add_test_case(case);
    }
    if !report.errors.is_empty() {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(report.errors[0].clone());
        status.set_type("drill");
        status.set_description(report.errors.join("\n"));
        let mut case = TestCase::new("drill", status);
        case.set_classname(format!("reclab.{}", report.lab));
        suite.add_test_case(case);
    }
    let mut junit = Report::new("reclab");
    junit.add_test_suite(suite);
    let xml = junit.to_string().context("serializing the junit report")?;
    Ok(drop_root_skipped(&xml))
}

/// Removes the `skipped` attribute quick-junit puts on `<testsuites>`: the Jenkins JUnit schema
/// (junit-4/junit-10 XSD) does not allow it there, and reclab never skips a check.
fn drop_root_skipped(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let end = xml[start..].find('>').map_or(xml.len(), |i| start + i);
    format!(
        "{}{}{}",
        &xml[..start],
        SKIPPED.replace(&xml[start..end], ""),
        &xml[end..]
    )
}

#[cfg(test)]
mod tests {
    use quick_xml::Reader;
    use quick_xml::events::Event;

    use super::*;
    use crate::report::tests::drill;
    use crate::report::tests::ts;

    /// (testsuites tests/failures/errors, testcase names, failure messages) read back.
    fn read_junit(xml: &str) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
        let mut reader = Reader::from_str(xml);
        let mut suite_attrs = Vec::new();
        let mut cases = Vec::new();
        let mut messages = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) => {
                    let attr = |name: &str| {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == name)
                            .map(|a| {
                                quick_xml::escape::unescape(a.value.as_ref())
                                    .unwrap()
                                    .into_owned()
                            })
                    };
                    match e.name().as_ref() {
                        "testsuite" => {
                            for key in ["tests", "failures", "errors"] {
                                suite_attrs.push((key.to_string(), attr(key).unwrap()));
                            }
                        }
                        "testcase" => cases.push(attr("name").unwrap()),
                        "failure" | "error" => messages.push(attr("message").unwrap()),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        (suite_attrs, cases, messages)
    }

    #[test]
    fn junit_has_one_case_per_check_with_the_right_counts_and_messages() {
        let xml = render_junit(&drill()).unwrap();
        let (suite, cases, messages) = read_junit(&xml);
        assert_eq!(
            suite,
            [
                ("tests".into(), "3".into()),
                ("failures".into(), "1".into()),
                ("errors".into(), "1".into())
            ]
        );
        assert_eq!(cases, ["db-heartbeat", "invoices-no-gaps", "app-version"]);
        assert_eq!(
            messages[0],
            "expected every number from 1 to 100 exactly once, got 99 numbers, 99 distinct, from 1 to 100"
        );
        assert!(xml.contains("classname=\"reclab.erp.db\""), "{xml}");
        assert!(xml.contains("missing 1 number: 57"), "{xml}");
    }

    #[test]
    fn a_failed_phase_is_one_more_error_case() {
        let mut report = DrillReport::new("erp", "run1", ts("2026-01-31T10:00:00Z"), None);
        report
            .errors
            .push("up: vm db did not become ready within 5m".into());
        report.finish(ts("2026-01-31T10:05:00Z"), None);
        let (suite, cases, messages) = read_junit(&render_junit(&report).unwrap());
        assert_eq!(suite[0], ("tests".into(), "1".into()));
        assert_eq!(cases, ["drill"]);
        assert_eq!(messages, ["up: vm db did not become ready within 5m"]);
    }

    #[test]
    fn only_the_root_loses_its_skipped_count() {
        let xml =
            "<?xml?>\n<testsuites name=\"r\" skipped=\"0\" tests=\"1\">\n<testsuite skipped=\"0\">";
        assert_eq!(
            drop_root_skipped(xml),
            "<?xml?>\n<testsuites name=\"r\" tests=\"1\">\n<testsuite skipped=\"0\">"
        );
    }
}
