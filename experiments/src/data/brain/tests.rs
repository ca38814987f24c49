//! Tests of `crate::data::brain`.

use super::*;

#[test]
fn lobe_mapping() {
    let cases = [
        ("Precentral_L", 0),
        ("Frontal_Inf_Orb_R", 0),
        ("Paracentral_Lobule_L", 0),
        ("Postcentral_R", 1),
        ("Precuneus_L", 1),
        ("Temporal_Pole_Mid_R", 2),
        ("Hippocampus_L", 2),
        ("Calcarine_R", 3),
        ("Cerebelum_Crus1_L", 4),
        ("Vermis_4_5", 4),
        ("Thalamus_R", 5),
        ("Insula_L", 6),
        ("Cingulum_Post_R", 6),
    ];
    for (name, lobe) in cases {
        assert_eq!(lobe_of(name), Some(lobe), "{name}");
    }
    assert_eq!(lobe_of("White_Matter"), None);
}

#[test]
fn hemisphere_split_and_midline_filter() {
    assert_eq!(side(-10.0, -1.0), Side::Left);
    assert_eq!(side(1.0, 9.0), Side::Right);
    assert_eq!(side(-1.0, 0.0), Side::Midline);
    assert_eq!(side(0.0, 3.0), Side::Midline);
    assert_eq!(side(-3.0, 3.0), Side::Midline);

    // A 12x4x4 volume with world x = voxel x - 6: patches of 2 with stride 2 have centres at
    // x = 1, 3, 5, 7, 9, 11 (voxels x-1..x). The atlas labels everything region 1, except
    // x = 9 which is background. Patches 1, 3 are left (x in -6..-3), 5 spans -2..-1 (left),
    // 7 spans 0..1 (midline: dropped), 9 is background, 11 spans 4..5 (right).
    let dims = [12, 4, 4];
    let n = 12 * 4 * 4;
    let affine = [
        [1.0, 0.0, 0.0, -6.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let t1 = Volume {
        dims,
        data: (0..n).map(|i| (i % 12) as f32).collect(),
        affine,
    };
    let atlas = Volume {
        dims,
        data: (0..n)
            .map(|i| if i % 12 == 9 { 0.0 } else { 1.0 })
            .collect(),
        affine,
    };
    let lobes = HashMap::from([(1, 3)]);
    let config = PatchConfig {
        size: 2,
        factor: 1,
        stride: 2,
        mirror_test: false,
        label: BrainLabel::Lobe,
        test_brain: TestBrain::Colin27Right,
    };
    let split = patches(&t1, &atlas, &lobes, &config);
    // Per x-centre there are 2x2 (y, z) centres, each a patch.
    assert_eq!(split.train.len(), 3 * 4);
    assert_eq!(split.test.len(), 4);
    assert_eq!(split.dropped_midline, 4);
    assert!(split.train.labels.iter().all(|&l| l == 3));
    // No test voxel comes from x < 6 (world x < 0): the raw values of the test patch are
    // x = 10, 11, so after z-scoring they exceed every training value.
    let max_train = split.train.pixels.iter().copied().fold(f32::MIN, f32::max);
    let min_test = split.test.pixels.iter().copied().fold(f32::MAX, f32::min);
    assert!(min_test > max_train);
    // Unmirrored, a test patch's x runs 10, 11; mirrored, 11, 10, and its centre's world x
    // is negated (the centre voxel 11 is world x = 5).
    assert!(split.test.pixels[0] < split.test.pixels[1]);
    let mirrored = patches(
        &t1,
        &atlas,
        &lobes,
        &PatchConfig {
            mirror_test: true,
            ..config
        },
    );
    assert_eq!(mirrored.test.pixels[0], split.test.pixels[1]);
    assert_eq!(mirrored.test.pixels[1], split.test.pixels[0]);
    assert_eq!(split.test_centres[0][0], 5.0);
    assert_eq!(mirrored.test_centres[0][0], -5.0);
    assert_eq!(mirrored.train, split.train);
    // A reversed voxel x axis gives the same sides (midline patches still dropped).
    assert_eq!(side(-1.0, -10.0), Side::Left);
    assert_eq!(side(1.0, -1.0), Side::Midline);
}

/// Tissue labels: terciles of the central cube's mean intensity, thresholds from the
/// training side only, the same patch centres as the lobe labels.
#[test]
fn tissue_labels_are_training_terciles_of_local_intensity() {
    assert_eq!(
        tercile_thresholds(&[5.0, 1.0, 3.0, 2.0, 6.0, 4.0]),
        [3.0, 5.0]
    );
    assert_eq!(tercile_thresholds(&[]), [f64::INFINITY; 2]);
    // 12 x 2 x 6 voxels, world x = voxel x - 6; patches of 2 (the central cube is the
    // whole patch), stride 2: x-centres 1, 3, 5 left, 7 midline, 9, 11 right; z-centres
    // 1, 3, 5. The intensity is 10·z + x, so a patch's mean grows with its z-centre.
    let dims = [12, 2, 6];
    let affine = [
        [1.0, 0.0, 0.0, -6.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let n = 12 * 2 * 6;
    let t1 = Volume {
        dims,
        data: (0..n).map(|i| (10 * (i / 24) + i % 12) as f32).collect(),
        affine,
    };
    let atlas = Volume {
        dims,
        data: vec![1.0; n],
        affine,
    };
    let lobes = HashMap::from([(1, 0)]);
    let config = PatchConfig {
        size: 2,
        factor: 1,
        stride: 2,
        mirror_test: true,
        label: BrainLabel::Tissue,
        test_brain: TestBrain::Colin27Right,
    };
    let split = patches(&t1, &atlas, &lobes, &config);
    let lobe = patches(
        &t1,
        &atlas,
        &lobes,
        &PatchConfig {
            label: BrainLabel::Lobe,
            test_brain: TestBrain::Colin27Right,
            ..config
        },
    );
    assert_eq!(split.train.pixels, lobe.train.pixels, "same patches");
    assert!(lobe.train.labels.iter().all(|&l| l == 0));
    // Training means are 10·(z - 0.5) + (x - 0.5): 5.5, 7.5, 9.5 at z-centre 1, 25.5,
    // 27.5, 29.5 at 3, 45.5, 47.5, 49.5 at 5; the thresholds are 25.5 and 45.5, so one
    // class per z-centre.
    assert_eq!(split.train.labels, vec![0, 0, 0, 1, 1, 1, 2, 2, 2]);
    // Test patches (x-centres 9, 11) are brighter than their row's training patches but
    // below the next row's: the same class per z-centre, by the training thresholds.
    assert_eq!(split.test.labels, vec![0, 0, 1, 1, 2, 2]);
}

#[test]
fn ambiguous_orientations_are_refused() {
    let v = |affine| Volume {
        dims: [4, 4, 4],
        data: vec![0.0; 64],
        affine,
    };
    let path = Path::new("t1.nii");
    let ras = [
        [1.0, 0.0, 0.0, -2.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    assert!(check_orientation(&v(ras), path).is_ok());
    let las = [
        [-1.0, 0.0, 0.0, 2.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    assert!(check_orientation(&v(las), path).is_ok());
    // Left-right along voxel y (a rotated grid), or oblique: refused.
    let rotated = [
        [0.0, 1.0, 0.0, -2.0],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let err = check_orientation(&v(rotated), path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ambiguous"), "{err}");
    let oblique = [
        [1.0, 0.3, 0.0, -2.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    assert!(check_orientation(&v(oblique), path).is_err());
    // All of the volume on one side of x = 0.
    let shifted = [
        [1.0, 0.0, 0.0, 5.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let err = check_orientation(&v(shifted), path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("midline"), "{err}");
}
