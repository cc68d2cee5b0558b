//! The OCR helper of the end-to-end tests (`tests/common/ocr.rs`) on a real screenshot: the noVNC
//! canvas of a small-estate guest's VGA console after `clear; echo typed-$((6*7))-ok` was typed
//! into it through the browser (taken by `tests/e2e_consoles.rs`). Needs Debian's tesseract-ocr.

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
fn numbers_and_lines_are_matched_whole() {
    let text = "  11435  Ines's Bakery  117957\n  typed-42-ok \n";
    assert!(ocr::has_number(text, "11435"));
    assert!(!ocr::has_number(text, "1143"));
    assert!(ocr::has_line(text, "typed-42-ok"));
    assert!(!ocr::has_line(text, "typed-42"));
}
