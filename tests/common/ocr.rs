//! Reading a screenshot for real: OCR of a VM's screen with Debian's `tesseract-ocr`.
//!
//! The one OCR helper of the tests (console screens typed into through the browser, and any
//! screenshot check that wants to read its picture). A VM's text console is crisp: every pixel is
//! either the background or a glyph's colour. [`read_screen`] turns it into black glyphs on white,
//! scales it up 2x smoothly (measured on VGA consoles: better than 3x or 4x, and than blocks), runs
//! `tesseract --psm 6` (one uniform block of text) on it and makes every dash a hyphen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{check, need_program};

/// How much the picture is scaled up before tesseract reads it.
const SCALE: usize = 2;

/// Whether tesseract is there (a missing one fails the test where tools are required).
pub fn have_tesseract() -> bool {
    need_program(
        "tesseract",
        "apt-get install tesseract-ocr tesseract-ocr-eng; scripts/setup",
    )
}

/// The text on the screen in `png` (any colour type). Keeps the picture tesseract read next to
/// it (`NAME.ocr.png`) and the text (`NAME.txt`), for whoever looks at a failure.
pub fn read_screen(png: &Path) -> String {
    let (w, h, luma) = luma_of(png);
    // The background is the most common shade; a glyph pixel is clearly different from it.
    let mut hist = [0usize; 256];
    for &l in &luma {
        hist[l as usize] += 1;
    }
    let bg = (0..256).max_by_key(|&i| hist[i]).unwrap() as i32;
    let ink: Vec<f32> = luma
        .iter()
        .map(|&l| f32::from(u8::from((l as i32 - bg).abs() > 60)))
        .collect();
    let at = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            ink[y as usize * w + x as usize]
        }
    };
    // Scaled up bilinearly: smooth edges read better than blocks (blocks make a VGA console's
    // hyphen an em dash).
    let border = 8 * SCALE;
    let (ow, oh) = (w * SCALE + 2 * border, h * SCALE + 2 * border);
    let mut out = vec![255u8; ow * oh];
    for y in 0..h * SCALE {
        let fy = (y as f32 + 0.5) / SCALE as f32 - 0.5;
        let (y0, ay) = (fy.floor() as isize, fy - fy.floor());
        for x in 0..w * SCALE {
            let fx = (x as f32 + 0.5) / SCALE as f32 - 0.5;
            let (x0, ax) = (fx.floor() as isize, fx - fx.floor());
            let v = (at(x0, y0) * (1.0 - ax) + at(x0 + 1, y0) * ax) * (1.0 - ay)
                + (at(x0, y0 + 1) * (1.0 - ax) + at(x0 + 1, y0 + 1) * ax) * ay;
            out[(border + y) * ow + border + x] = (255.0 * (1.0 - v)) as u8;
        }
    }
    let prepared = sibling(png, "ocr.png");
    let file = std::fs::File::create(&prepared).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), ow as u32, oh as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&out).unwrap();

    let out = Command::new("tesseract")
        .arg(&prepared)
        .args(["stdout", "--psm", "6", "-l", "eng"])
        .output()
        .expect("run tesseract");
    check(&out, &format!("tesseract {}", prepared.display()));
    // The dashes OCR tells apart are one on a text console.
    let text: String = String::from_utf8_lossy(&out.stdout)
        .chars()
        .map(|c| match c {
            '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
            c => c,
        })
        .collect();
    std::fs::write(sibling(png, "txt"), &text).unwrap();
    text
}

/// Whether one of the OCR'd lines is exactly `word` (spaces around it aside).
pub fn has_line(text: &str, word: &str) -> bool {
    text.lines().any(|l| l.trim() == word)
}

/// Whether `number` stands on the screen as a number of its own (not as part of a longer one).
pub fn has_number(text: &str, number: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|t| t == number)
}

/// Whether one OCR'd line is a table row that starts with `first` (a trailing `.` or `,` that OCR
/// adds aside) and also shows `also`: an invoice's number with its amount, say, so that a digit
/// somewhere else on the screen does not count.
pub fn has_row(text: &str, first: &str, also: &str) -> bool {
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next().map(|w| w.trim_end_matches(['.', ','])) == Some(first)
            && words.any(|w| w.contains(also))
    })
}

/// Take screenshots with `shot` (which writes a PNG to the path it is given) and read them until
/// `ok` accepts the text; the text and the screenshot it was read from. Fails after `timeout`
/// with the last text read. Screenshots are numbered `DIR/NAME-N.png` and all kept.
pub fn wait_for_screen(
    what: &str,
    dir: &Path,
    name: &str,
    timeout: Duration,
    mut shot: impl FnMut(&Path),
    ok: impl Fn(&str) -> bool,
) -> (String, PathBuf) {
    let t = Instant::now();
    for n in 1.. {
        let path = dir.join(format!("{name}-{n}.png"));
        shot(&path);
        let text = read_screen(&path);
        if ok(&text) {
            eprintln!(
                "{what}: read on the screen after {:.1}s ({})",
                t.elapsed().as_secs_f64(),
                path.display()
            );
            return (text, path);
        }
        assert!(
            t.elapsed() < timeout,
            "{what}: not on the screen after {timeout:?}; the last screenshot {} reads:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    unreachable!()
}

/// Width, height and luminance (0..=255) of every pixel of a PNG.
fn luma_of(png_path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(png_path).unwrap_or_else(|e| panic!("{}: {e}", png_path.display()));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let samples = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let luma = buf[..info.buffer_size()]
        .chunks(samples)
        .map(|px| match px.len() {
            1 | 2 => px[0],
            _ => ((px[0] as u32 * 299 + px[1] as u32 * 587 + px[2] as u32 * 114) / 1000) as u8,
        })
        .collect();
    (w, h, luma)
}

/// `dir/name.png` → `dir/name.EXT`.
fn sibling(png: &Path, ext: &str) -> PathBuf {
    png.with_extension(ext)
}
