//! The single-file HTML report: named parts, each a function of the report, concatenated. The
//! style sheet is `assets/report.css`; screenshots are embedded as `data:` URIs, so the file
//! needs nothing else.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{DrillReport, DrillResult, SCHEMA, human, opt_human_signed, opt_time};
use crate::base::text::html_escape as esc;
use crate::base::when::for_people_utc;
use crate::verify::{CheckResult, Status};

const CSS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/report.css"));

/// The single-file HTML report. `screenshots` maps check names to PNG bytes.
pub fn render_html(report: &DrillReport, screenshots: &BTreeMap<String, Vec<u8>>) -> String {
    [
        head(report),
        verdict(report),
        figures(report),
        errors(report),
        signoffs(report),
        checks(report),
        screens(report, screenshots),
        restore_points(report),
        timings(report),
        footer(report),
    ]
    .concat()
}

/// The document up to `<main>`: title and style sheet.
fn head(report: &DrillReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>reclab drill {lab} {run}: {verdict}</title><style>\n{CSS}</style></head><body><main>\n",
        lab = esc(&report.lab),
        run = esc(&report.run),
        verdict = report.result.label()
    )
}

/// The heading, the run's times and the verdict with the check counts.
fn verdict(report: &DrillReport) -> String {
    let (passed, failed, errors) = report.counts();
    let class = match report.result {
        DrillResult::Verified => "verified",
        DrillResult::Failed => "failed",
        DrillResult::Error => "error",
    };
    format!(
        "<h1>Restore drill: {lab}</h1><div class=\"sub\">run {run} &middot; started {started} &middot; finished {finished}</div>\n\
         <div class=\"verdict {class}\">{label}</div> <span class=\"sub\">{passed} passed, {failed} failed, {errors} errors</span>\n",
        lab = esc(&report.lab),
        run = esc(&report.run),
        started = for_people_utc(report.started_at),
        finished = for_people_utc(report.finished_at),
        label = report.result.label()
    )
}

/// The two figures (recovery time, data age) and the requested moment.
fn figures(report: &DrillReport) -> String {
    let recovery = report
        .recovery_time
        .map(human)
        .unwrap_or_else(|| "not reached".into());
    let at = report
        .at
        .map(for_people_utc)
        .unwrap_or_else(|| "latest".into());
    format!(
        "<div class=\"figures\">\
         <div class=\"figure\">recovery time<b>{}</b><span class=\"sub\">start to verified lab</span></div>\
         <div class=\"figure\">data age<b>{}</b><span class=\"sub\">requested moment minus newest data</span></div>\
         <div class=\"figure\">requested moment<b>{}</b><span class=\"sub\">newest data {}</span></div></div>\n",
        esc(&recovery),
        esc(&opt_human_signed(report.data_age)),
        esc(&at),
        esc(&opt_time(report.newest_data()))
    )
}

/// A section with a list, or nothing when the list is empty.
fn list_section(title: &str, class: &str, items: Vec<String>) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!(
        "<h2>{title}</h2><ul class=\"{class}\">{}</ul>\n",
        items.concat()
    )
}

/// The operational errors, one per failed phase.
fn errors(report: &DrillReport) -> String {
    let items = report
        .errors
        .iter()
        .map(|error| format!("<li>{}</li>", esc(error)))
        .collect();
    list_section("Errors", "errors", items)
}

/// The customers' sign-offs.
fn signoffs(report: &DrillReport) -> String {
    let items = report
        .signoffs
        .iter()
        .map(|so| {
            format!(
                "<li><b>{}</b> at {}{}: {}</li>",
                esc(&so.name),
                esc(&for_people_utc(so.at)),
                so.vm
                    .as_deref()
                    .map(|v| format!(" (vm {})", esc(v)))
                    .unwrap_or_default(),
                esc(&so.comment)
            )
        })
        .collect();
    list_section("Sign-off", "signoffs", items)
}

/// A table: the heading, the header row's cells (already markup), the rows.
fn table_section(title: &str, header: &str, rows: impl Iterator<Item = String>) -> String {
    format!(
        "<h2>{title}</h2><table><tr>{header}</tr>\n{}</table>\n",
        rows.collect::<String>()
    )
}

/// The check table, one row per check.
fn checks(report: &DrillReport) -> String {
    table_section(
        "Checks",
        "<th>result</th><th>check</th><th>vm</th><th>kind</th><th>time</th><th>expected / got</th>",
        report.checks.iter().map(check_row),
    )
}

/// One check: its verdict, and what was expected, what came, the details and the output.
fn check_row(c: &CheckResult) -> String {
    let (class, pill) = match c.status {
        Status::Pass => ("pass", "PASS"),
        Status::Fail => ("fail", "FAIL"),
        Status::Error => ("err", "ERROR"),
    };
    let row = if c.status == Status::Pass {
        ""
    } else {
        " class=\"bad\""
    };
    let expected = c
        .expected
        .iter()
        .map(|e| format!("<div><b>expected</b> {}</div>", esc(e)));
    let got = c
        .got
        .iter()
        .map(|g| format!("<div><b>got</b> {}</div>", esc(g)));
    let details = c.details.iter().map(|d| format!("<pre>{}</pre>", esc(d)));
    let tail = c.output_tail.iter().map(|t| {
        format!(
            "<details><summary>end of output</summary><pre>{}</pre></details>",
            esc(t)
        )
    });
    format!(
        "<tr{row}><td><span class=\"pill {class}\">{pill}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        esc(&c.name),
        esc(&c.vm),
        esc(&c.kind),
        esc(&human(c.duration)),
        expected
            .chain(got)
            .chain(details)
            .chain(tail)
            .collect::<String>()
    )
}

/// The screenshots, embedded, captioned with their check and VM.
fn screens(report: &DrillReport, screenshots: &BTreeMap<String, Vec<u8>>) -> String {
    if screenshots.is_empty() {
        return String::new();
    }
    let figures: String = screenshots
        .iter()
        .map(|(name, png)| {
            let vm = report
                .checks
                .iter()
                .find(|c| &c.name == name)
                .map(|c| c.vm.as_str())
                .unwrap_or("");
            format!(
                "<figure><img alt=\"screen of {vm}\" src=\"data:image/png;base64,{}\"><figcaption>{} ({vm})</figcaption></figure>\n",
                B64.encode(png),
                esc(name),
                vm = esc(vm)
            )
        })
        .collect();
    format!("<h2>Screens</h2><div class=\"shots\">\n{figures}</div>\n")
}

/// What each VM was restored from, with times and checksums.
fn restore_points(report: &DrillReport) -> String {
    let rows = report.restore_points.iter().map(|r| {
        let image = r.image.as_ref();
        let dump = r.dump.as_ref();
        let sums: Vec<String> = [
            image
                .and_then(|i| i.checksum.as_ref())
                .map(|sum| format!("image {sum}")),
            dump.and_then(|d| d.sha256.as_ref())
                .map(|sum| format!("dump sha256 {sum}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let dump_text = dump
            .map(|d| match d.bytes {
                Some(bytes) => format!("{} ({bytes} bytes)", d.file),
                None => d.file.clone(),
            })
            .unwrap_or_else(|| "-".into());
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>\n",
            esc(&r.vm),
            esc(image.map(|i| i.source.as_str()).unwrap_or("-")),
            esc(&opt_time(image.and_then(|i| i.taken_at))),
            esc(&dump_text),
            esc(&opt_time(dump.and_then(|d| d.taken_at))),
            esc(&sums.join("\n"))
        )
    });
    table_section(
        "Restore point",
        "<th>vm</th><th>image</th><th>image taken</th><th>dump</th><th>dump taken</th><th>checksums</th>",
        rows,
    )
}

/// The phases with their durations as bars.
fn timings(report: &DrillReport) -> String {
    let total: f64 = report
        .phases
        .iter()
        .map(|p| p.duration.as_secs_f64())
        .sum::<f64>()
        .max(0.001);
    let rows = report.phases.iter().map(|p| {
        let width = (p.duration.as_secs_f64() / total * 100.0).clamp(0.5, 100.0);
        format!(
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td><div class=\"bar\" style=\"width:{width:.1}%\"></div></td></tr>\n",
            if p.ok { "" } else { " class=\"bad\"" },
            esc(&p.name),
            if p.ok { "" } else { " (failed)" },
            for_people_utc(p.started_at),
            esc(&human(p.duration))
        )
    });
    table_section(
        "Timings",
        "<th>phase</th><th>started</th><th>duration</th><th style=\"width:40%\"></th>",
        rows,
    )
}

/// The schema and the lab file, and the end of the document.
fn footer(report: &DrillReport) -> String {
    format!(
        "<p class=\"sub\">report schema {SCHEMA}{}</p>\n</main></body></html>\n",
        report
            .lab_file
            .as_ref()
            .map(|f| format!(" &middot; lab file {}", esc(f)))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::ppm::{Rgb, encode_png};
    use crate::report::tests::drill;

    #[test]
    fn html_embeds_screenshots_and_escapes_guest_text() {
        let mut report = drill();
        report.checks[0].got = Some("<script>alert(1)</script>".into());
        let png = encode_png(&Rgb {
            width: 2,
            height: 1,
            pixels: vec![0, 0, 0, 255, 255, 255],
        })
        .unwrap();
        let html = render_html(
            &report,
            &BTreeMap::from([("app-screen".to_string(), png.clone())]),
        );
        assert!(html.contains(&format!(
            "src=\"data:image/png;base64,{}\"",
            B64.encode(&png)
        )));
        assert!(
            !html.contains("<script>"),
            "guest output must not become markup"
        );
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<div class=\"verdict failed\">FAILED</div>"));
        assert!(html.contains("<td>inject</td>"), "per-phase timing table");
        assert!(html.contains("prod-db@nightly"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }
}
