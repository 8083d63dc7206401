//! Tells rust-embed where `cargo xtask build` writes the admin app's bundle (`<target>/site/pkg`),
//! also when CARGO_TARGET_DIR is set, and rebuilds when files appear there.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { root.join(dir) }
        }
        None => root.join("target"),
    };
    let pkg = target.join("site").join("pkg");
    std::fs::create_dir_all(&pkg).expect("create the site pkg folder");
    println!("cargo:rustc-env=SWITCHYARD_PKG_DIR={}", pkg.display());
    println!("cargo:rerun-if-changed={}", pkg.display());
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
}
