//! The topology language: HCL files → validated [`Topology`].
pub mod model;

pub use model::*;
