//! `read_package`: the one RPM header reader (the core's) for Python too.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::buildroot::header::{read_package as read, BadPackage, PackageKind};
use crate::core::error::Error;

/// The header of the RPM at `path`, as a dict: `name`, `version`, `release`, `epoch` (int or
/// None), `arch`, `sourcepackage` (bool), `spec_file` (a source package's spec, or None),
/// `vendor`, `packager`, `distribution` (or None). Raises InvalidSpec when it cannot be read
/// or is not an RPM.
#[pyfunction]
pub fn read_package(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let package = py
        .detach(|| read(&path))
        .map_err(|BadPackage(why)| Error::invalid(format!("{} {why}", path.display())))?;
    let d = PyDict::new(py);
    d.set_item("name", package.name)?;
    d.set_item("version", package.version)?;
    d.set_item("release", package.release)?;
    d.set_item("epoch", package.epoch)?;
    d.set_item("arch", package.arch)?;
    d.set_item("sourcepackage", package.kind == PackageKind::Source)?;
    d.set_item("spec_file", package.spec_file)?;
    d.set_item("vendor", package.vendor)?;
    d.set_item("packager", package.packager)?;
    d.set_item("distribution", package.distribution)?;
    Ok(d)
}
