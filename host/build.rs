//! Rebuilds muon when a dashboard file is added or removed under `ui/`:
//! rust-embed lists the folder when the crate compiles, and Cargo would
//! otherwise notice only edits to the files it already embedded.

fn main() {
    println!("cargo:rerun-if-changed=ui");
}
