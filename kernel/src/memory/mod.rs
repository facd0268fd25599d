//! Memory: physical frames from the bootloader's memory map, and the heap's
//! virtual range.
pub mod frames;
pub mod heap_region;
