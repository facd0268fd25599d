//! Placeholder: the allocator core (being written).
#![no_std]
