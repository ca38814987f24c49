//! The ELPV transfer study's building blocks: paired stratified splits and image-respecting
//! augmentation. (The study itself, on the harness, is built from these.)

pub mod augment;
pub mod split;
