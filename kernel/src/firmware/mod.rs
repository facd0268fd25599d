//! Firmware tables: ACPI.
pub mod acpi;
