//! The blank-screen judge: a screenshot whose pixels are all about one color shows nothing.

use anyhow::{Context, Result, anyhow};

use super::Outcome;

/// Largest per-channel spread (0..=255) of a screenshot that still counts as blank.
const BLANK_SPREAD: u8 = 8;

/// A screenshot is blank when every channel of every pixel is within [`BLANK_SPREAD`] of the
/// others (a black console, a one-color error screen).
pub fn eval_blank_png(png_bytes: &[u8]) -> Outcome {
    match png_spread(png_bytes) {
        Err(err) => Outcome::error(format!("the screenshot is not a readable PNG: {err:#}")),
        Ok((width, height, spread, color)) => {
            let expected = "a screen with content (not one color)".to_string();
            let got = format!("{width}x{height}, color spread {spread} of 255");
            if spread > BLANK_SPREAD {
                Outcome::pass(expected, got)
            } else {
                Outcome::fail(expected, got).detail(format!(
                    "every pixel is about #{:02x}{:02x}{:02x}",
                    color[0], color[1], color[2]
                ))
            }
        }
    }
}

/// Width, height, the largest per-channel spread and the first pixel's color.
fn png_spread(png_bytes: &[u8]) -> Result<(u32, u32, u8, [u8; 3])> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().context("reading the png header")?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| anyhow!("png too large"))?
    ];
    let info = reader.next_frame(&mut buf).context("decoding the png")?;
    let bytes = &buf[..info.buffer_size()];
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => anyhow::bail!("indexed png was not expanded"),
    };
    let color_channels = if channels <= 2 { 1 } else { 3 };
    let mut low = [255u8; 3];
    let mut high = [0u8; 3];
    for pixel in bytes.chunks_exact(channels) {
        for c in 0..color_channels {
            low[c] = low[c].min(pixel[c]);
            high[c] = high[c].max(pixel[c]);
        }
    }
    let spread = (0..color_channels)
        .map(|c| high[c].saturating_sub(low[c]))
        .max()
        .unwrap_or(0);
    let first = bytes.get(..channels).unwrap_or(&[0, 0, 0]);
    let color = if color_channels == 1 {
        [first[0]; 3]
    } else {
        [first[0], first[1], first[2]]
    };
    Ok((info.width, info.height, spread, color))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::ppm::{Rgb, encode_png};
    use crate::verify::Status;

    fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend(pixel(x, y));
            }
        }
        encode_png(&Rgb {
            width,
            height,
            pixels,
        })
        .unwrap()
    }

    #[test]
    fn a_one_color_screen_is_blank_and_text_on_it_is_not() {
        let black = eval_blank_png(&png(64, 48, |_, _| [0, 0, 0]));
        assert_eq!(black.status, Status::Fail);
        assert_eq!(black.details, ["every pixel is about #000000"]);
        let noisy_blue = eval_blank_png(&png(64, 48, |x, y| [0, 0, 170 + ((x + y) % 4) as u8]));
        assert_eq!(
            noisy_blue.status,
            Status::Fail,
            "slight noise is still blank"
        );
        let console = eval_blank_png(&png(64, 48, |x, y| {
            if y == 10 && x < 30 {
                [170, 170, 170]
            } else {
                [0, 0, 0]
            }
        }));
        assert_eq!(console.status, Status::Pass);
        assert_eq!(
            console.got.as_deref(),
            Some("64x48, color spread 170 of 255")
        );
        assert_eq!(eval_blank_png(b"not a png").status, Status::Error);
    }
}
