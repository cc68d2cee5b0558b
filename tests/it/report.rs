//! The drill report as a browser and a CI system see it: the HTML report rendered by a real
//! headless Chromium must not be blank, and the JUnit report must validate against the
//! Jenkins JUnit schema. Both need tools from `scripts/report-tools`; without them the tests
//! say so and pass, except in CI and scripts/test, where a missing tool fails them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jiff::Timestamp;
use reclab::hv::ppm::{Rgb, encode_png};
use reclab::report::{DrillReport, Phase, RestoredDump, RestoredImage, VmRestore, write_report};
use reclab::verify::{CheckResult, Status, eval_blank_png};

/// Skips (or, in CI and scripts/test, fails) a test whose tool is missing.
fn missing(what: &str) {
    crate::common::need(false, what, "scripts/report-tools installs it");
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn check(name: &str, vm: &str, kind: &str, status: Status, got: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        vm: vm.into(),
        kind: kind.into(),
        status,
        duration: Duration::from_millis(730),
        expected: Some("every number from 1 to 120 exactly once".into()),
        got: Some(got.into()),
        details: if status == Status::Pass {
            Vec::new()
        } else {
            vec!["missing 1 number: 57".into()]
        },
        output_tail: Some("[stdout]\n...\n119\n120\n".into()),
        screenshot: None,
    }
}

/// A drill of the demo estate at "2h ago" with one planted gap and a console screenshot.
fn drill(dir: &Path) -> DrillReport {
    // A text console: grey lines on black.
    let (width, height) = (320u32, 200u32);
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let text = y % 16 < 8 && x < 40 + (y * 7) % 240;
            pixels.extend(if text { [170, 170, 170] } else { [0, 0, 0] });
        }
    }
    let shot = dir.join("app-screen.png");
    std::fs::write(
        &shot,
        encode_png(&Rgb {
            width,
            height,
            pixels,
        })
        .unwrap(),
    )
    .unwrap();

    let mut report = DrillReport::new(
        "erp",
        "1a2b3c4d",
        ts("2026-01-31T10:00:00Z"),
        Some(ts("2026-01-31T08:00:00Z")),
    );
    report.restore_points = vec![VmRestore {
        vm: "db".into(),
        image: Some(RestoredImage {
            source: "prod-db@nightly".into(),
            taken_at: Some(ts("2026-01-31T02:00:00Z")),
            checksum: None,
        }),
        dump: Some(RestoredDump {
            file: "erp.sql.gz".into(),
            sha256: Some("9f86d081884c7d65".into()),
            bytes: Some(18_432),
            taken_at: Some(ts("2026-01-31T07:00:00Z")),
            manifest: None,
            attach: None,
        }),
    }];
    report.phases = ["up", "inject", "verify"]
        .iter()
        .enumerate()
        .map(|(i, name)| Phase {
            name: (*name).into(),
            started_at: ts("2026-01-31T10:00:00Z"),
            duration: Duration::from_secs(30 * (i as u64 + 1)),
            ok: true,
        })
        .collect();
    let mut screen = check("app-screen", "app", "screenshot", Status::Pass, "320x200");
    screen.screenshot = Some(shot);
    report.checks = vec![
        check(
            "db-heartbeat",
            "db",
            "heartbeat",
            Status::Pass,
            "it answered",
        ),
        check(
            "invoices-no-gaps",
            "db",
            "sequence",
            Status::Fail,
            "119 numbers",
        ),
        check("app-version", "client", "http", Status::Error, "no answer"),
        screen,
    ];
    report.finish(ts("2026-01-31T10:03:00Z"), Some(ts("2026-01-31T10:02:40Z")));
    report
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("/usr/bin/chromium");
    }
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(&dir.path().join("report"), &drill(dir.path())).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let shot = dir.path().join("rendered.png");
    let output = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", files.html.display()))
        .output()
        .expect("running chromium");
    assert!(
        shot.exists(),
        "chromium wrote no screenshot ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    let outcome = eval_blank_png(&png);
    assert_eq!(
        outcome.status,
        Status::Pass,
        "the rendered report looks blank: {outcome:?}"
    );
    assert_eq!(
        outcome.got.as_deref().map(|g| g.split(',').next().unwrap()),
        Some("1200x1600")
    );
    // Keep the rendering for a human to look at when asked to.
    if let Some(keep) = std::env::var_os("RECLAB_KEEP_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn the_junit_report_validates_against_the_jenkins_schema() {
    let xsd = std::env::var_os("RECLAB_JUNIT_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let dev = std::env::var_os("RECLAB_DEV_DIR").unwrap_or("/var/tmp/reclab-dev".into());
            Path::new(&dev).join("junit-xsd/jenkins-junit.xsd")
        });
    if !xsd.exists() {
        return missing(&format!("the JUnit schema {}", xsd.display()));
    }
    if Command::new("xmllint").arg("--version").output().is_err() {
        return missing("xmllint");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut reports = vec![drill(dir.path())];
    // A drill that failed before any check: a single "drill" error case.
    let mut broken = DrillReport::new("erp", "5e6f7a8b", ts("2026-01-31T10:00:00Z"), None);
    broken
        .errors
        .push("up: vm db did not become ready within 5m".into());
    broken.finish(ts("2026-01-31T10:05:00Z"), None);
    reports.push(broken);
    for (i, report) in reports.iter().enumerate() {
        let files = write_report(&dir.path().join(format!("r{i}")), report).unwrap();
        let output = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&xsd)
            .arg(&files.junit)
            .output()
            .expect("running xmllint");
        assert!(
            output.status.success(),
            "{} does not validate against {}:\n{}{}",
            files.junit.display(),
            xsd.display(),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&files.junit).unwrap()
        );
    }
}
