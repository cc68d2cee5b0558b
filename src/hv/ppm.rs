//! Conversion of the binary PPM (P6) screenshots QEMU sends into PNG.

use anyhow::{Context, Result, bail, ensure};

/// A decoded 8-bit RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row by row.
    pub pixels: Vec<u8>,
}

/// Parse a binary PPM (`P6`, max value 255), as written by QEMU's `screendump`.
pub fn parse_ppm(data: &[u8]) -> Result<Rgb> {
    let mut pos = 0;
    let mut fields = Vec::with_capacity(4);
    while fields.len() < 4 {
        // Skip whitespace and `#` comments between header fields.
        while pos < data.len() && (data[pos].is_ascii_whitespace() || data[pos] == b'#') {
            if data[pos] == b'#' {
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                pos += 1;
            }
        }
        let start = pos;
        while pos < data.len() && !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        ensure!(start < pos, "truncated ppm header");
        fields.push(std::str::from_utf8(&data[start..pos]).context("non-ascii ppm header")?);
    }
    if fields[0] != "P6" {
        bail!(
            "unsupported image format {:?} (expected binary ppm P6)",
            fields[0]
        );
    }
    let width: u32 = fields[1].parse().context("bad ppm width")?;
    let height: u32 = fields[2].parse().context("bad ppm height")?;
    let maxval: u32 = fields[3].parse().context("bad ppm max value")?;
    ensure!(
        maxval == 255,
        "unsupported ppm max value {maxval} (expected 255)"
    );
    // Exactly one whitespace byte separates the header from the pixels.
    pos += 1;
    let len = width as usize * height as usize * 3;
    let pixels = data
        .get(pos..pos + len)
        .with_context(|| format!("truncated ppm: {width}x{height} needs {len} bytes of pixels"))?;
    Ok(Rgb {
        width,
        height,
        pixels: pixels.to_vec(),
    })
}

/// Encode an RGB image as PNG.
pub fn encode_png(img: &Rgb) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width, img.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().context("writing png header")?;
    writer
        .write_image_data(&img.pixels)
        .context("writing png data")?;
    writer.finish().context("finishing png")?;
    Ok(out)
}

/// Convert a binary PPM screenshot to PNG.
pub fn ppm_to_png(data: &[u8]) -> Result<Vec<u8>> {
    encode_png(&parse_ppm(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn qemu_style_ppm_becomes_an_identical_png() {
        let pixels: Vec<u8> = (0..2 * 3 * 3).map(|i| i as u8 * 10).collect();
        let mut ppm = b"P6\n2 3\n255\n".to_vec();
        ppm.extend_from_slice(&pixels);
        let (w, h, decoded) = decode_png(&ppm_to_png(&ppm).unwrap());
        assert_eq!((w, h), (2, 3));
        assert_eq!(decoded, pixels);
    }

    #[test]
    fn header_comments_are_skipped() {
        let mut ppm = b"P6 # made by hand\n1 1 # size\n255\n".to_vec();
        ppm.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_ppm(&ppm).unwrap().pixels, vec![1, 2, 3]);
    }

    #[test]
    fn truncated_and_foreign_images_are_rejected() {
        let err = parse_ppm(b"P6\n2 2\n255\n\x00\x00").unwrap_err();
        assert!(format!("{err:#}").contains("truncated ppm"), "{err:#}");
        let err = parse_ppm(b"P3\n1 1\n255\n0 0 0").unwrap_err();
        assert!(format!("{err:#}").contains("P3"), "{err:#}");
    }
}
