//! koji-adjutant's extension module `koji_adjutant._core`.
pub mod core;
