//! The 3-D task: cubic patches of the Colin27 T1, labelled by the lobe of the AAL region at
//! their centre or by tissue, trained on the left hemisphere and tested on the right
//! (within-subject), or trained on Colin27 and tested on ICBM152 ([`cross`], cross-template).

pub mod cross;
pub mod grid;
pub mod tissue;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::nifti::{Volume, read_volume};
use super::{Images, Result, format_error, read, require};

/// The lobe classes.
pub const LOBES: [&str; 7] = [
    "frontal",
    "parietal",
    "temporal",
    "occipital",
    "cerebellum",
    "subcortical",
    "insula/cingulate",
];

/// The lobe (index into [`LOBES`]) of an AAL region name, or `None` for a name this mapping
/// does not know.
///
/// Central and medial regions follow the usual AAL lobe groupings: precentral, Rolandic
/// operculum, supplementary motor area, olfactory, gyrus rectus and paracentral lobule are
/// frontal; postcentral, supramarginal, angular and precuneus are parietal; Heschl, fusiform,
/// hippocampus, parahippocampal and amygdala are temporal; calcarine, cuneus and lingual are
/// occipital; the vermis is cerebellum; caudate, putamen, pallidum and thalamus are
/// subcortical.
pub fn lobe_of(name: &str) -> Option<usize> {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if starts(&["Insula", "Cingulum"]) {
        Some(6)
    } else if starts(&[
        "Precentral",
        "Frontal",
        "Rolandic",
        "Supp_Motor",
        "Olfactory",
        "Rectus",
        "Paracentral",
    ]) {
        Some(0)
    } else if starts(&[
        "Postcentral",
        "Parietal",
        "SupraMarginal",
        "Angular",
        "Precuneus",
    ]) {
        Some(1)
    } else if starts(&[
        "Temporal",
        "Heschl",
        "Fusiform",
        "Hippocampus",
        "ParaHippocampal",
        "Amygdala",
    ]) {
        Some(2)
    } else if starts(&["Calcarine", "Cuneus", "Lingual", "Occipital"]) {
        Some(3)
    } else if starts(&["Cerebelum", "Vermis"]) {
        Some(4)
    } else if starts(&["Caudate", "Putamen", "Pallidum", "Thalamus"]) {
        Some(5)
    } else {
        None
    }
}

/// Parse `aal.nii.txt` (`index name colour` per line) into index -> lobe.
///
/// # Errors
/// A malformed line or a region name with no lobe.
pub fn read_lobes(path: &Path) -> Result<HashMap<u32, usize>> {
    let text = String::from_utf8_lossy(&read(path)?).into_owned();
    let mut map = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(index), Some(name)) = (parts.next(), parts.next()) else {
            return Err(format_error(path, format!("bad line `{line}`")));
        };
        let index: u32 = index
            .parse()
            .map_err(|_| format_error(path, format!("bad region index in `{line}`")))?;
        let lobe = lobe_of(name)
            .ok_or_else(|| format_error(path, format!("region `{name}` has no lobe")))?;
        map.insert(index, lobe);
    }
    Ok(map)
}

/// Which side of the midline a patch lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Entirely at world x < 0 (left, in RAS/MNI space).
    Left,
    /// Entirely at world x > 0.
    Right,
    /// Touches or crosses x = 0: dropped, so that no voxel is in both splits.
    Midline,
}

/// The side of a patch whose voxels span world x between `a` and `b` (either order: the voxel
/// x axis may point left or right).
pub fn side(a: f32, b: f32) -> Side {
    let (x_min, x_max) = (a.min(b), a.max(b));
    if x_max < 0.0 {
        Side::Left
    } else if x_min > 0.0 {
        Side::Right
    } else {
        Side::Midline
    }
}

/// The tissue-appearance classes: terciles of the mean T1 intensity of the central 4³ voxels
/// (8 mm at 2 mm voxels) of a patch, thresholds from the training hemisphere.
pub const TISSUES: [&str; 3] = ["dark", "mid", "bright"];

/// What a patch is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrainLabel {
    /// The lobe of the AAL region at the centre ([`LOBES`]): largely a function of position.
    #[default]
    Lobe,
    /// Local appearance ([`TISSUES`]): how bright the T1 is around the centre, as terciles,
    /// which position alone predicts poorly.
    Tissue,
    /// CSF, grey or white matter ([`tissue::SEGMENTS`]) by the intensity procedure of
    /// [`tissue`], which labels any brain-extracted T1 alike (cross-template mode).
    Segment,
}

impl BrainLabel {
    /// The class names.
    pub fn classes(self) -> &'static [&'static str] {
        match self {
            BrainLabel::Lobe => &LOBES,
            BrainLabel::Tissue => &TISSUES,
            BrainLabel::Segment => &tissue::SEGMENTS,
        }
    }

    /// The task name in results.
    pub fn task(self) -> &'static str {
        match self {
            BrainLabel::Lobe => "brain-lobes",
            BrainLabel::Tissue => "brain-tissue",
            BrainLabel::Segment => "brain-segment",
        }
    }
}

impl std::str::FromStr for BrainLabel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lobe" => Ok(BrainLabel::Lobe),
            "tissue" => Ok(BrainLabel::Tissue),
            "segment" => Ok(BrainLabel::Segment),
            _ => Err(format!("`{s}`: expected lobe, tissue or segment")),
        }
    }
}

/// How patches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PatchConfig {
    /// Patch side in resampled voxels.
    pub size: usize,
    /// Resampling factor (2: 2 mm voxels from the 1 mm template, by block averaging).
    pub factor: usize,
    /// Distance between patch centres, in resampled voxels.
    pub stride: usize,
    /// Mirror the right-hemisphere (test) patches along x, so that train and test patches have
    /// the same orientation (medial on the same side).
    pub mirror_test: bool,
    /// The label. Patches are cut at the same centres (inside the AAL-labelled brain) for
    /// either.
    #[serde(default)]
    pub label: BrainLabel,
    /// Where the test patches come from.
    #[serde(default)]
    pub test_brain: TestBrain,
}

/// Where the test patches come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestBrain {
    /// Within-subject: Colin27's right hemisphere, after training on its left.
    #[default]
    Colin27Right,
    /// Cross-template: ICBM152 2009a, after training on all of (brain-extracted) Colin27.
    Icbm152,
}

impl TestBrain {
    /// The spelling on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            TestBrain::Colin27Right => "colin27-right",
            TestBrain::Icbm152 => "icbm152",
        }
    }
}

impl std::str::FromStr for TestBrain {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "colin27-right" => Ok(TestBrain::Colin27Right),
            "icbm152" => Ok(TestBrain::Icbm152),
            _ => Err(format!("`{s}`: expected colin27-right or icbm152")),
        }
    }
}

/// Patches of one hemisphere: `[d, h, w] = [z, y, x]`, z-scored with the training statistics.
#[derive(Debug, Clone)]
pub struct BrainSplit {
    /// Left-hemisphere patches (training).
    pub train: Images,
    /// Right-hemisphere patches (test).
    pub test: Images,
    /// Patches dropped because they touch the midline.
    pub dropped_midline: usize,
    /// World coordinates (mm) of each training patch's centre voxel.
    pub train_centres: Vec<[f32; 3]>,
    /// World coordinates of each test patch's centre voxel, x mirrored (`-x`) when the patches
    /// are, so that they compare with the training centres.
    pub test_centres: Vec<[f32; 3]>,
    /// How the labelling procedure agrees with a reference, where there is one (the
    /// cross-template mode's ICBM152 tissue maps).
    pub labelling: Vec<tissue::Agreement>,
}

/// Refuse a volume whose orientation makes the hemisphere split ambiguous: the world x axis
/// (left-right) must run along the voxel x axis alone (no rotation or shear mixing it with y or
/// z), and the volume must straddle world x = 0.
///
/// # Errors
/// A format error naming the affine.
pub fn check_orientation(v: &Volume, path: &Path) -> Result<()> {
    let row = v.affine[0];
    let along = row[0].abs();
    let across = row[1].abs().max(row[2].abs());
    if along == 0.0 || across > 1e-3 * along {
        return Err(format_error(
            path,
            format!(
                "world x row of the affine is {row:?}: left-right is not the voxel x axis, so \
                 the hemisphere split would be ambiguous; reslice the volume to an axis-aligned \
                 (RAS or LAS) grid"
            ),
        ));
    }
    let (a, b) = (
        v.world(0, 0, 0)[0],
        v.world(v.dims[0].saturating_sub(1), 0, 0)[0],
    );
    if a.min(b) >= 0.0 || a.max(b) <= 0.0 {
        return Err(format_error(
            path,
            format!(
                "the volume spans world x {a}..{b} mm, so it does not straddle the midline x = 0; \
                 the hemisphere split needs a volume in MNI-like coordinates"
            ),
        ));
    }
    Ok(())
}

/// Load the volumes from `data_dir/mri` and cut the patches: the two hemispheres of Colin27,
/// or Colin27 and ICBM152 ([`cross::load`]), as `config.test_brain` says.
///
/// # Errors
/// Missing files (with the fetch command), malformed files, or volumes on different grids.
pub fn load(data_dir: &Path, config: &PatchConfig) -> Result<BrainSplit> {
    match config.test_brain {
        TestBrain::Colin27Right => load_within(data_dir, config),
        TestBrain::Icbm152 => cross::load(data_dir, config),
    }
}

/// The within-subject split: Colin27's left hemisphere, then its right.
fn load_within(data_dir: &Path, config: &PatchConfig) -> Result<BrainSplit> {
    let dir = data_dir.join("mri");
    let t1_path = require(data_dir, dir.join("ch2.nii.gz"))?;
    let atlas_path = require(data_dir, dir.join("aal.nii.gz"))?;
    let names = require(data_dir, dir.join("aal.nii.txt"))?;
    let t1 = read_volume(&t1_path)?;
    check_orientation(&t1, &t1_path)?;
    let atlas = read_volume(&atlas_path)?;
    if t1.dims != atlas.dims {
        return Err(format_error(
            &atlas_path,
            format!(
                "atlas grid {:?} differs from the T1 grid {:?}",
                atlas.dims, t1.dims
            ),
        ));
    }
    let lobes = read_lobes(&names)?;
    Ok(patches(&t1, &atlas, &lobes, config))
}

/// Cut labelled patches from a T1 volume and an atlas on the same grid.
pub fn patches(
    t1: &Volume,
    atlas: &Volume,
    lobes: &HashMap<u32, usize>,
    config: &PatchConfig,
) -> BrainSplit {
    let f = config.factor.max(1);
    let small = grid::block_average(t1, f);
    let [nx, ny, nz] = [t1.dims[0] / f, t1.dims[1] / f, t1.dims[2] / f];
    let p = config.size;
    let half = p / 2;
    let mut left = (Vec::new(), Vec::new());
    let mut right = (Vec::new(), Vec::new());
    let (mut left_centres, mut right_centres) = (Vec::new(), Vec::new());
    // Mean intensity of each patch's central cube (the tissue label's input).
    let (mut left_local, mut right_local) = (Vec::new(), Vec::new());
    let c = half.min(2);
    let mut dropped = 0;
    let stride = config.stride.max(1);
    for cz in (half..=nz.saturating_sub(p - half)).step_by(stride) {
        for cy in (half..=ny.saturating_sub(p - half)).step_by(stride) {
            for cx in (half..=nx.saturating_sub(p - half)).step_by(stride) {
                // The centre voxel of the patch, on the atlas grid.
                let label = atlas.at(cx * f, cy * f, cz * f).round();
                let Some(&lobe) = (label > 0.0).then(|| lobes.get(&(label as u32))).flatten()
                else {
                    continue;
                };
                let x0 = (cx - half) * f;
                let x1 = (cx - half + p) * f - 1;
                let side = side(t1.world(x0, 0, 0)[0], t1.world(x1, 0, 0)[0]);
                let centre = t1.world(cx * f, cy * f, cz * f);
                let mirror = side == Side::Right && config.mirror_test;
                let (target, centres, local) = match side {
                    Side::Left => (&mut left, &mut left_centres, &mut left_local),
                    Side::Right => (&mut right, &mut right_centres, &mut right_local),
                    Side::Midline => {
                        dropped += 1;
                        continue;
                    }
                };
                for z in cz - half..cz - half + p {
                    for y in cy - half..cy - half + p {
                        let row = (z * ny + y) * nx;
                        let line = &small[row + cx - half..row + cx - half + p];
                        if mirror {
                            target.0.extend(line.iter().rev());
                        } else {
                            target.0.extend_from_slice(line);
                        }
                    }
                }
                let mut sum = 0.0f64;
                for z in cz - c..cz + c {
                    for y in cy - c..cy + c {
                        let row = (z * ny + y) * nx;
                        sum += small[row + cx - c..row + cx + c]
                            .iter()
                            .map(|&v| f64::from(v))
                            .sum::<f64>();
                    }
                }
                local.push(sum / (8 * c * c * c).max(1) as f64);
                target.1.push(lobe);
                centres.push(if mirror {
                    [-centre[0], centre[1], centre[2]]
                } else {
                    centre
                });
            }
        }
    }
    if config.label == BrainLabel::Tissue {
        let [lo, hi] = tercile_thresholds(&left_local);
        let class = |m: &f64| usize::from(*m >= lo) + usize::from(*m >= hi);
        left.1 = left_local.iter().map(class).collect();
        right.1 = right_local.iter().map(class).collect();
    }
    // z-score with the training (left) statistics.
    let stats = MeanStd::of(&left.0);
    let norm = |v: Vec<f32>| stats.standardize(v);
    let images = |(pixels, labels): (Vec<f32>, Vec<usize>)| Images {
        pixels: norm(pixels),
        dims: vec![p, p, p],
        labels,
    };
    BrainSplit {
        train: images(left),
        test: images(right),
        dropped_midline: dropped,
        train_centres: left_centres,
        test_centres: right_centres,
        labelling: Vec::new(),
    }
}

/// The mean and standard deviation (population, floored at 1e-6) that z-score a split.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MeanStd {
    mean: f64,
    std: f64,
}

impl MeanStd {
    /// The statistics of `values` (mean 0, std 1e-6 for none).
    pub(crate) fn of(values: &[f32]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        Self {
            mean,
            std: var.sqrt().max(1e-6),
        }
    }

    /// `(v - mean) / std` for each value.
    pub(crate) fn standardize(&self, values: Vec<f32>) -> Vec<f32> {
        values
            .into_iter()
            .map(|x| ((f64::from(x) - self.mean) / self.std) as f32)
            .collect()
    }
}

/// The values at the 1/3 and 2/3 quantiles (lower order statistics) of `values`, so that about
/// a third of them lie below the first, a third from the first to below the second, and a third
/// at or above the second (`[inf, inf]` for none).
pub fn tercile_thresholds(values: &[f64]) -> [f64; 2] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |k: usize| {
        sorted
            .get(k * sorted.len() / 3)
            .copied()
            .unwrap_or(f64::INFINITY)
    };
    [at(1), at(2)]
}

#[cfg(test)]
mod tests;
