//! The thin Python layer over `crate::core`: conversions, exceptions and the one blocking
//! helper. Nothing here decides behaviour; it translates.

pub mod block;
pub mod buildarch;
pub mod context;
pub mod createrepo;
pub mod errors;
pub mod header;
pub mod manager;
pub mod sinks;
pub mod types;
