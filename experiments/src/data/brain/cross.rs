//! Cross-template transfer: train on the brain-extracted Colin27 T1, test on the ICBM152 2009a
//! (symmetric) T1, both on Colin27's 1 mm grid.
//!
//! ICBM152 is the non-linear average of 152 brains registered to MNI space, the space Colin27
//! (one brain scanned 27 times) also lives in, so this is cross-template transfer, not
//! cross-subject. Both T1s are brain-extracted (zero outside the brain). Patches of each brain
//! are cut at centres inside its own brain (and, for the lobe label, inside the AAL atlas);
//! the test centres sit half a stride off the training ones on each axis, so that no test patch
//! repeats a training position. Each brain is z-scored with its own patches' statistics (label
//! free: the two templates come on different intensity scales). Labels come from one procedure
//! for both brains ([`super::tissue`]), and on ICBM152 that procedure is checked against the
//! template's grey- and white-matter probability maps.

use std::collections::HashMap;
use std::path::Path;

use super::grid::{block_average, resample_onto};
use super::tissue::{self, Agreement};
use super::{BrainLabel, BrainSplit, MeanStd, PatchConfig, check_orientation, read_lobes};
use crate::data::nifti::{Volume, read_volume};
use crate::data::{Images, Result, format_error, require};

/// The brain-extracted Colin27 T1 (Debian `mricron-data`), under `DATA/mri`.
pub const COLIN_BET: &str = "ch2bet.nii.gz";
/// The ICBM152 2009a symmetric T1 and tissue maps (PyPI `nilearn` 0.14.1), under
/// `DATA/mri/icbm152`.
pub const ICBM_T1: &str = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz";
/// ICBM152's grey-matter probability map.
pub const ICBM_GM: &str = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz";
/// ICBM152's white-matter probability map.
pub const ICBM_WM: &str = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz";

/// One brain on the common grid, block-averaged to patch voxels.
struct Brain {
    /// The T1, block-averaged.
    t1: Vec<f32>,
    /// Sizes of the block-averaged grid.
    dims: [usize; 3],
}

impl Brain {
    fn at(&self, x: usize, y: usize, z: usize) -> f32 {
        self.t1[x + self.dims[0] * (y + self.dims[1] * z)]
    }
}

/// Load both brains and cut the training (Colin27) and test (ICBM152) patches.
///
/// # Errors
/// Missing files (with the fetch command), malformed files, volumes whose grids or orientation
/// cannot be matched, or a brain with no voxel inside it.
pub fn load(data_dir: &Path, config: &PatchConfig) -> Result<BrainSplit> {
    let dir = data_dir.join("mri");
    let colin_path = require(data_dir, dir.join(COLIN_BET))?;
    let icbm_dir = dir.join("icbm152");
    let icbm_paths = [ICBM_T1, ICBM_GM, ICBM_WM].map(|f| require(data_dir, icbm_dir.join(f)));
    let [t1_path, gm_path, wm_path] = icbm_paths;
    let (t1_path, gm_path, wm_path) = (t1_path?, gm_path?, wm_path?);
    let colin = read_volume(&colin_path)?;
    check_orientation(&colin, &colin_path)?;
    let on_colin = |path: &Path| -> Result<Volume> {
        let v = read_volume(path)?;
        check_orientation(&v, path)?;
        resample_onto(&v, path, colin.dims, colin.affine)
    };
    let icbm = on_colin(&t1_path)?;
    let lobes = match config.label {
        BrainLabel::Lobe => {
            let atlas_path = require(data_dir, dir.join("aal.nii.gz"))?;
            let atlas = read_volume(&atlas_path)?;
            if atlas.dims != colin.dims || atlas.affine != colin.affine {
                return Err(format_error(
                    &atlas_path,
                    format!(
                        "atlas grid {:?} differs from the Colin27 grid {:?}",
                        atlas.dims, colin.dims
                    ),
                ));
            }
            let names = require(data_dir, dir.join("aal.nii.txt"))?;
            Some((atlas, read_lobes(&names)?))
        }
        _ => None,
    };
    let f = config.factor.max(1);
    let small = |v: &Volume| Brain {
        t1: block_average(v, f),
        dims: [v.dims[0] / f, v.dims[1] / f, v.dims[2] / f],
    };
    let (train_brain, test_brain) = (small(&colin), small(&icbm));
    let stride = config.stride.max(1);
    let labeller = Labeller::new(config, lobes.as_ref().map(|(a, l)| (a, l)), f);
    let train = cut(&train_brain, &colin, config, 0, &labeller, &colin_path)?;
    let test = cut(&test_brain, &colin, config, stride / 2, &labeller, &t1_path)?;
    // The intensity procedure's agreement with ICBM152's maps, when it is what labels the
    // patches (the lobe label reads the atlas instead).
    let labelling = if config.label == BrainLabel::Segment {
        let maps = [on_colin(&gm_path)?, on_colin(&wm_path)?];
        vec![agreement_with_maps(&test_brain, &test, &maps, config)]
    } else {
        Vec::new()
    };
    Ok(BrainSplit {
        train: train.images,
        test: test.images,
        dropped_midline: 0,
        train_centres: train.world_centres,
        test_centres: test.world_centres,
        labelling,
    })
}

/// How the test patches' `segment` labels agree with the classes of ICBM152's grey- and
/// white-matter `maps` (on the common grid) over the same central voxels.
fn agreement_with_maps(
    brain: &Brain,
    test: &Cut,
    maps: &[Volume; 2],
    config: &PatchConfig,
) -> Agreement {
    let f = config.factor.max(1);
    let [gm, wm] = maps.each_ref().map(|m| block_average(m, f));
    // Probabilities: the maps are scaled so that grey + white peaks at 1.
    let peak = gm
        .iter()
        .zip(&wm)
        .map(|(g, w)| g + w)
        .fold(0.0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let reference: Vec<usize> = test
        .grid_centres
        .iter()
        .map(|&c| {
            tissue::majority(
                central(&brain.dims, c, config)
                    .into_iter()
                    .map(|i| tissue::reference_class(gm[i] / peak, wm[i] / peak)),
            )
        })
        .collect();
    tissue::agreement(
        "ICBM152: the intensity procedure against the template's grey/white-matter maps",
        &reference,
        &test.images.labels,
        3,
        test.thresholds,
    )
}

/// How a patch centre is labelled.
struct Labeller<'a> {
    label: BrainLabel,
    atlas: Option<(&'a Volume, &'a HashMap<u32, usize>)>,
    factor: usize,
}

impl<'a> Labeller<'a> {
    fn new(
        config: &PatchConfig,
        atlas: Option<(&'a Volume, &'a HashMap<u32, usize>)>,
        factor: usize,
    ) -> Self {
        Self {
            label: config.label,
            atlas,
            factor,
        }
    }

    /// The AAL lobe at a centre, when the label is the lobe (`None`: not a lobe centre).
    fn lobe(&self, c: [usize; 3]) -> Option<usize> {
        let (atlas, lobes) = self.atlas?;
        let f = self.factor;
        let v = atlas.at(c[0] * f, c[1] * f, c[2] * f).round();
        (v > 0.0).then(|| lobes.get(&(v as u32)).copied()).flatten()
    }
}

/// One brain's patches.
struct Cut {
    images: Images,
    grid_centres: Vec<[usize; 3]>,
    world_centres: Vec<[f32; 3]>,
    thresholds: [f64; 2],
}

/// The voxel indices of the central cube (side 4, or the patch if smaller) around `c`.
fn central(dims: &[usize; 3], c: [usize; 3], config: &PatchConfig) -> Vec<usize> {
    let h = (config.size / 2).min(2);
    let [nx, ny, _] = *dims;
    let mut out = Vec::with_capacity(8 * h * h * h);
    for z in c[2] - h..c[2] + h {
        for y in c[1] - h..c[1] + h {
            out.extend((c[0] - h..c[0] + h).map(|x| x + nx * (y + ny * z)));
        }
    }
    out
}

/// The `segment` class of the patch at `c`: the most frequent class of its central cube.
fn segment_at(brain: &Brain, c: [usize; 3], config: &PatchConfig, t: [f64; 2]) -> usize {
    tissue::majority(
        central(&brain.dims, c, config)
            .into_iter()
            .map(|i| tissue::class_of(brain.t1[i], t)),
    )
}

/// Cut the patches of `brain` at centres every `stride` voxels from `offset`, inside the brain
/// (and the atlas, for lobes), labelled, z-scored with their own statistics.
fn cut(
    brain: &Brain,
    grid: &Volume,
    config: &PatchConfig,
    offset: usize,
    labeller: &Labeller<'_>,
    path: &Path,
) -> Result<Cut> {
    let inside: Vec<f32> = brain.t1.iter().copied().filter(|&v| v > 0.0).collect();
    let thresholds = tissue::three_means(&inside)
        .map(tissue::thresholds)
        .ok_or_else(|| {
            format_error(
                path,
                "no voxel of the volume is inside the brain (all zero)",
            )
        })?;
    let p = config.size;
    let half = p / 2;
    let f = config.factor.max(1);
    let [nx, ny, nz] = brain.dims;
    let stride = config.stride.max(1);
    let (mut pixels, mut labels, mut grid_centres, mut world_centres) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for cz in (half + offset..=nz.saturating_sub(p - half)).step_by(stride) {
        for cy in (half + offset..=ny.saturating_sub(p - half)).step_by(stride) {
            for cx in (half + offset..=nx.saturating_sub(p - half)).step_by(stride) {
                let c = [cx, cy, cz];
                if brain.at(cx, cy, cz) <= 0.0 {
                    continue;
                }
                let label = match labeller.label {
                    BrainLabel::Lobe => match labeller.lobe(c) {
                        Some(l) => l,
                        None => continue,
                    },
                    _ => segment_at(brain, c, config, thresholds),
                };
                for z in cz - half..cz - half + p {
                    for y in cy - half..cy - half + p {
                        let row = (z * ny + y) * nx;
                        pixels.extend_from_slice(&brain.t1[row + cx - half..row + cx - half + p]);
                    }
                }
                labels.push(label);
                grid_centres.push(c);
                world_centres.push(grid.world(cx * f, cy * f, cz * f));
            }
        }
    }
    // Each brain with its own statistics: the templates come on different intensity scales.
    let pixels = MeanStd::of(&pixels).standardize(pixels);
    Ok(Cut {
        images: Images {
            pixels,
            dims: vec![p, p, p],
            labels,
        },
        grid_centres,
        world_centres,
        thresholds,
    })
}
