//! Runs and checks tinycnn models on the workstation without libtorch: the int8 blob through
//! `shared` (the code the firmware runs), the ONNX exports through tract, and the real firmware
//! ELF in QEMU; plus the image-folder data sets and preprocessing they all read. The training
//! crate (`tinycnn-host`) builds on this one.
#![forbid(unsafe_code)]

pub mod check;
pub mod dataset;
pub mod firmware;
pub mod fsutil;
pub mod images;
pub mod predict;
pub mod report;
pub mod tract;
