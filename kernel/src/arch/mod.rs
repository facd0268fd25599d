//! Architecture support. Only x86_64 exists; generic code reaches the CPU
//! only through what this module re-exports.
mod x86_64;

pub use self::x86_64::*;
