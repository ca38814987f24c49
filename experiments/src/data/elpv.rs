//! ELPV: 2,624 electroluminescence images of solar cells (Deitsch et al., Solar Energy 185,
//! 2019), as PyPI's `elpv-dataset` 1.0.0.post1 ships them and `scripts/fetch-data.sh` copies them
//! into `<data>/elpv/`: `labels.csv` and `images/cellNNNN.png`, 300x300 8-bit grayscale.
//!
//! `labels.csv` has one whitespace-separated row per image: its path (relative to the folder),
//! the defect probability an expert gave (0, 1/3, 2/3 or 1) and the cell type (`mono`/`poly`).
//! The four probabilities are the four classes, 0..=3. The data is CC BY-NC-SA 4.0: it is
//! fetched, never committed, and the tests use images they make.

use std::path::{Path, PathBuf};

use super::{Images, Result, format_error, read, require};

/// The side of every ELPV image.
pub const SIZE: usize = 300;

/// The defect probabilities, in class order.
pub const PROBABILITIES: [f64; 4] = [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0];

/// The cell's technology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CellType {
    /// Monocrystalline.
    Mono,
    /// Polycrystalline.
    Poly,
}

/// One row of `labels.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The image, relative to the ELPV folder.
    pub image: PathBuf,
    /// The defect class, 0..=3 (probability 0, 1/3, 2/3, 1).
    pub class: usize,
    /// Mono or poly.
    pub kind: CellType,
}

/// The data set, decoded and resized.
#[derive(Debug, Clone)]
pub struct Elpv {
    /// The images, `[size, size]` each, grayscale scaled to `0..=1` (pixel / 255), labelled with
    /// their defect class.
    pub images: Images,
    /// The cell type of each image.
    pub kinds: Vec<CellType>,
}

/// Parse `labels.csv`.
///
/// # Errors
/// [`DataError::Missing`](super::DataError::Missing) when the file is not there (with the fetch command), and
/// [`DataError::Format`](super::DataError::Format) naming the line for a row that does not have three fields, a
/// probability that is not one of the four, or a type that is not `mono`/`poly`.
pub fn read_labels(dir: &Path) -> Result<Vec<Cell>> {
    let path = require(dir, dir.join("labels.csv"))?;
    let text = String::from_utf8(read(&path)?)
        .map_err(|e| format_error(&path, format!("not UTF-8 text: {e}")))?;
    let mut cells = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| format_error(&path, format!("line {}: {why}: {line:?}", i + 1));
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [image, prob, kind] = fields[..] else {
            return Err(bad(format!(
                "{} fields, expected 3 (image, probability, type)",
                fields.len()
            )));
        };
        let p: f64 = prob
            .parse()
            .map_err(|_| bad(format!("probability {prob:?} is not a number")))?;
        let class = PROBABILITIES
            .iter()
            .position(|q| (q - p).abs() < 1e-6)
            .ok_or_else(|| bad(format!("probability {p} is not one of 0, 1/3, 2/3, 1")))?;
        let kind = match kind {
            "mono" => CellType::Mono,
            "poly" => CellType::Poly,
            other => return Err(bad(format!("type {other:?} is not mono or poly"))),
        };
        cells.push(Cell {
            image: PathBuf::from(image),
            class,
            kind,
        });
    }
    if cells.is_empty() {
        return Err(format_error(&path, "no rows"));
    }
    Ok(cells)
}

/// Decode one 8-bit grayscale PNG of `SIZE`x`SIZE`.
///
/// # Errors
/// [`DataError::Missing`](super::DataError::Missing) for a row whose image is not there, and [`DataError::Format`](super::DataError::Format) for a
/// file that is not a PNG, is corrupt, is not 8-bit grayscale, or is not 300x300.
pub fn read_png(dir: &Path, image: &Path) -> Result<Vec<u8>> {
    let path = require(dir, dir.join(image))?;
    let bytes = read(&path)?;
    let bad = |why: String| format_error(&path, why);
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let info = reader.info();
    let (w, h, color, depth) = (info.width, info.height, info.color_type, info.bit_depth);
    if (w as usize, h as usize) != (SIZE, SIZE) {
        return Err(bad(format!("{w}x{h} pixels, expected {SIZE}x{SIZE}")));
    }
    if color != png::ColorType::Grayscale || depth != png::BitDepth::Eight {
        return Err(bad(format!(
            "{color:?} at {depth:?} bits, expected 8-bit grayscale"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(format!("corrupt PNG data: {e}")))?;
    buf.truncate(frame.buffer_size());
    if buf.len() != SIZE * SIZE {
        return Err(bad(format!(
            "decoded to {} bytes, expected {}",
            buf.len(),
            SIZE * SIZE
        )));
    }
    Ok(buf)
}

/// Read every image of `labels.csv` in `dir`, resized to `size`x`size` by area averaging.
///
/// # Errors
/// As [`read_labels`] and [`read_png`]; `size` of 0 or above 300 is a [`DataError::Format`](super::DataError::Format) on
/// the folder.
pub fn load(dir: &Path, size: usize) -> Result<Elpv> {
    load_first(dir, size, None)
}

/// [`load`], keeping only `limit` rows of `labels.csv`, evenly spaced (row `⌊i·n/limit⌋` for
/// `i` in `0..limit`; every row with `None`): a smoke run reads a few dozen images of every
/// kind, where the first rows of the file are all of one. Every kept image is decoded and
/// checked.
///
/// # Errors
/// As [`load`].
pub fn load_first(dir: &Path, size: usize, limit: Option<usize>) -> Result<Elpv> {
    if size == 0 || size > SIZE {
        return Err(format_error(
            dir,
            format!("image size {size}: choose 1..={SIZE} (the images are {SIZE}x{SIZE})"),
        ));
    }
    let mut cells = read_labels(dir)?;
    if let Some(keep) = limit
        && keep < cells.len()
    {
        let n = cells.len();
        cells = (0..keep).map(|i| cells[i * n / keep].clone()).collect();
    }
    let mut pixels = Vec::with_capacity(cells.len() * size * size);
    for cell in &cells {
        let raw = read_png(dir, &cell.image)?;
        let src: Vec<f32> = raw.iter().map(|&v| f32::from(v) / 255.0).collect();
        pixels.extend(resize_area(&src, SIZE, size));
    }
    Ok(Elpv {
        images: Images {
            pixels,
            dims: vec![size, size],
            labels: cells.iter().map(|c| c.class).collect(),
        },
        kinds: cells.iter().map(|c| c.kind).collect(),
    })
}

/// Resize a square `[n, n]` image to `[m, m]` (m <= n) by area averaging: each output pixel is the
/// mean of the input area it covers, partial pixels weighted by their overlap. At an integer ratio
/// this is the plain block mean (2x2 at 300 -> 150).
pub fn resize_area(src: &[f32], n: usize, m: usize) -> Vec<f32> {
    let weights = area_weights(n, m);
    // Rows first: [n, n] -> [n, m], then columns: -> [m, m].
    let mut rows = vec![0f32; n * m];
    for y in 0..n {
        for (o, taps) in weights.iter().enumerate() {
            rows[y * m + o] = taps.iter().map(|&(i, w)| w * src[y * n + i]).sum();
        }
    }
    let mut out = vec![0f32; m * m];
    for (o, taps) in weights.iter().enumerate() {
        for x in 0..m {
            out[o * m + x] = taps.iter().map(|&(i, w)| w * rows[i * m + x]).sum();
        }
    }
    out
}

/// For each of `m` output cells along an axis of `n`, the input cells it overlaps and the weight
/// of each (overlap / cell width; the weights of one output sum to 1).
fn area_weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let ratio = n as f64 / m as f64;
    (0..m)
        .map(|o| {
            let (lo, hi) = (o as f64 * ratio, (o + 1) as f64 * ratio);
            (lo.floor() as usize..(hi.ceil() as usize).min(n))
                .filter_map(|i| {
                    let overlap = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                    (overlap > 1e-12).then_some((i, (overlap / ratio) as f32))
                })
                .collect()
        })
        .collect()
}
