//! The admin app's browser bundle: wasm build, bindgen (in-process, exactly the pinned version),
//! CSS, then a copy of only the changed files into `target/site/pkg` (which the server embeds).

use crate::{cargo, root, status, target_dir, Profile};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => {
            eprintln!("xtask: installing the {WASM_TARGET} target");
            status(Command::new("rustup").args(["target", "add", WASM_TARGET]))
                .context("the admin app needs the wasm target; run `rustup target add wasm32-unknown-unknown`")
        }
        // No rustup: trust that the toolchain has the target, cargo will say if not.
        Err(_) => Ok(()),
    }
}

pub fn build(profile: Profile) -> Result<()> {
    ensure_wasm_target()?;
    let wasm_profile = if profile == Profile::Release { "wasm-release" } else { "dev" };
    status(cargo().args([
        "build", "-p", "app", "--lib", "--target", WASM_TARGET, "--profile", wasm_profile,
        "--no-default-features", "--features", "hydrate",
    ]))?;
    let out_dir = if wasm_profile == "dev" { "debug" } else { wasm_profile };
    let input = target_dir().join(WASM_TARGET).join(out_dir).join("app.wasm");
    let stage = target_dir().join("site-stage");
    std::fs::create_dir_all(&stage)?;
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    bindgen
        .input_path(&input)
        .web(true)?
        .typescript(false)
        .remove_name_section(profile == Profile::Release)
        .remove_producers_section(profile == Profile::Release)
        .out_name("app");
    bindgen.generate(&stage).with_context(|| format!("wasm-bindgen on {}", input.display()))?;
    std::fs::copy(root().join("style").join("main.css"), stage.join("app.css")).context("copy style/main.css")?;
    let pkg = target_dir().join("site").join("pkg");
    sync(&stage, &pkg)?;
    report_size(&pkg.join("app_bg.wasm"))
}

/// Copies files whose bytes changed, so an unchanged bundle does not rebuild the server.
fn sync(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let dest = to.join(entry.file_name());
        let new = std::fs::read(entry.path())?;
        if std::fs::read(&dest).ok().as_deref() != Some(new.as_slice()) {
            std::fs::write(&dest, &new)?;
        }
    }
    Ok(())
}

fn report_size(wasm: &Path) -> Result<()> {
    let raw = std::fs::read(wasm).with_context(|| format!("read {}", wasm.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    let gzipped = gz.finish()?.len();
    eprintln!(
        "xtask: hydrate wasm {} KB raw, {} KB gzip ({})",
        raw.len() / 1024,
        gzipped / 1024,
        wasm.display()
    );
    Ok(())
}
