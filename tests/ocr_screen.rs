//! The OCR helper of the end-to-end tests (`tests/common/ocr.rs`) on real screenshots, noVNC
//! canvases of VGA consoles taken through the browser: a small-estate guest's shell after
//! `clear; echo typed-$((6*7))-ok` was typed into it (`tests/e2e_consoles.rs`), and the real
//! estate's client after the customer logged in (`tests/e2e_customer_view.rs`). Needs Debian's
//! tesseract-ocr.

mod common;

use common::ocr;

#[test]
fn reads_what_a_vga_text_console_shows() {
    if !ocr::have_tesseract() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("vga-shell.png");
    std::fs::copy(
        common::repo().join("tests/fixtures/screens/vga-shell.png"),
        &png,
    )
    .unwrap();
    let text = ocr::read_screen(&png);
    // A hyphen read as a dash would miss; the prompt's `#` is not asked for (OCR reads it as `t`).
    assert!(ocr::has_line(&text, "typed-42-ok"), "read:\n{text}");
    assert!(
        text.lines().nth(1).unwrap().starts_with("db:"),
        "read:\n{text}"
    );
    assert!(dir.path().join("vga-shell.ocr.png").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("vga-shell.txt")).unwrap(),
        text
    );
}

#[test]
fn reads_the_invoice_list_of_the_customers_login() {
    if !ocr::have_tesseract() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("real-client-invoices.png");
    std::fs::copy(
        common::repo().join("tests/fixtures/screens/real-client-invoices.png"),
        &png,
    )
    .unwrap();
    let text = ocr::read_screen(&png);
    // What the screen shows (invoice number, amount), as the lab's PostgreSQL held it.
    let rows = [
        ("20", "260.50"),
        ("19", "223.50"),
        ("18", "186.50"),
        ("17", "149.50"),
        ("16", "112.50"),
        ("15", "75.50"),
        ("14", "38.50"),
        ("13", "491.50"),
        ("12", "454.50"),
        ("11", "417.50"),
    ];
    let read: Vec<_> = rows
        .iter()
        .filter(|(no, amount)| ocr::has_row(&text, no, amount))
        .collect();
    // Measured: 9 of 10 (the VGA font's 7 reads as `?`).
    assert!(read.len() >= 8, "read {read:?} of {rows:?} in:\n{text}");
    assert!(text.contains("erp-web 3.1.0"), "read:\n{text}");
    assert!(text.contains("customer@client:~$"), "read:\n{text}");
    // A number elsewhere on the screen is no invoice row.
    assert!(!ocr::has_row(&text, "6.1.0-57-cloud-amd64", "260.50"));
}

#[test]
fn numbers_and_lines_are_matched_whole() {
    let text = "  11435  Ines's Bakery  117957\n  typed-42-ok \n";
    assert!(ocr::has_number(text, "11435"));
    assert!(!ocr::has_number(text, "1143"));
    assert!(ocr::has_line(text, "typed-42-ok"));
    assert!(!ocr::has_line(text, "typed-42"));
    assert!(ocr::has_row(text, "11435", "117957"));
    assert!(ocr::has_row("  13.  Dogwood Books  491.50", "13", "491.50"));
    assert!(!ocr::has_row(text, "11435", "59677"));
    assert!(!ocr::has_row(text, "117957", "11435"));
}
