//! The summary table printed at the end of a drill (and kept as `summary.txt`).

use std::fmt::Write as _;

use super::{DrillReport, human, indent, opt_human, opt_human_signed, table};
use crate::verify::Status;

/// The summary table printed at the end of a drill.
pub fn render_terminal(report: &DrillReport) -> String {
    let (passed, failed, errors) = report.counts();
    let mut out = format!(
        "drill {} (run {}): {} ({passed} passed, {failed} failed, {errors} errors)\n",
        report.lab,
        report.run,
        report.result.label()
    );
    let _ = writeln!(
        out,
        "requested moment {}; recovery time {}; data age {}",
        report
            .at
            .map(crate::base::when::for_people_utc)
            .unwrap_or_else(|| "latest".into()),
        opt_human(report.recovery_time),
        opt_human_signed(report.data_age)
    );
    for error in &report.errors {
        let _ = writeln!(out, "error: {error}");
    }
    if !report.checks.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "CHECK".to_string(),
            "VM".into(),
            "KIND".into(),
            "RESULT".into(),
            "TIME".into(),
        ]];
        for c in &report.checks {
            rows.push(vec![
                c.name.clone(),
                c.vm.clone(),
                c.kind.clone(),
                c.status.to_string(),
                human(c.duration),
            ]);
        }
        out.push_str(&table(&rows));
        for c in report.checks.iter().filter(|c| c.status != Status::Pass) {
            let _ = writeln!(out, "\n{} {}:", c.status, c.name);
            if let Some(expected) = &c.expected {
                let _ = writeln!(out, "    expected: {expected}");
            }
            if let Some(got) = &c.got {
                let _ = writeln!(out, "    got:      {got}");
            }
            for detail in &c.details {
                out.push_str(&indent(detail, "    "));
            }
            if let Some(tail) = &c.output_tail {
                let _ = writeln!(out, "    output (end):");
                out.push_str(&indent(tail, "      "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::drill;

    #[test]
    fn the_terminal_summary_explains_failures() {
        let text = render_terminal(&drill());
        assert!(
            text.starts_with("drill erp (run 1a2b3c4d): FAILED (1 passed, 1 failed, 1 errors)\n"),
            "{text}"
        );
        assert!(
            text.contains("requested moment 2026-01-31T08:00:00Z; recovery time -; data age 1h\n"),
            "{text}"
        );
        assert!(
            text.contains("CHECK             VM      KIND       RESULT  TIME\n"),
            "{text}"
        );
        assert!(
            text.contains("invoices-no-gaps  db      sequence   FAIL    0.4s\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nFAIL invoices-no-gaps:\n    expected: every number from 1 to 100 exactly once\n"
            ),
            "{text}"
        );
        assert!(text.contains("    missing 1 number: 57\n"), "{text}");
    }
}
