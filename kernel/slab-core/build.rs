//! Declares the `loom` cfg so `#[cfg(loom)]` does not trip `unexpected_cfgs`
//! (the workspace lint table cannot be extended per package).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
