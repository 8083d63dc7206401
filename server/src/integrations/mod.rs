//! The catalog of integrations: built-in manifests embedded in the binary (the `integrations/`
//! folder), each checked when loaded, with its logo and fixtures; and the Rust side of
//! integrations that are code (`handler`).

pub mod cli;
pub mod fixtures;
pub mod handlers;
pub mod destination;
pub mod route;
pub mod sample;
pub mod settings;

use model::integration::{check::check, CatalogItem, Manifest};
use model::mapping::check_manifest;
use rust_embed::RustEmbed;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../integrations/"]
struct Builtin;

/// The catalog and the cipher of secret settings: what every destination operation needs.
#[derive(Clone)]
pub struct Integrations {
    pub catalog: Arc<Catalog>,
    pub cipher: Arc<crate::secrets::Cipher>,
    pub transports: Arc<crate::transport::Transports>,
    /// HTTP destinations may reach private addresses (config `allow_private_destinations`).
    pub allow_private: bool,
    /// How much of a request body the attempt log keeps (config `attempt_request_bytes`).
    pub log_request_bytes: usize,
}

impl Integrations {
    pub fn load(keys: &crate::keys::Keys, config: &crate::config::Config) -> anyhow::Result<Integrations> {
        let options = config.transport_options();
        Ok(Integrations {
            catalog: Arc::new(Catalog::builtin()?),
            cipher: Arc::new(crate::secrets::Cipher::new(&keys.secrets)),
            transports: Arc::new(crate::transport::Transports::new(&options)),
            allow_private: options.allow_private,
            log_request_bytes: config.attempt_request_bytes,
        })
    }
}

/// One integration: its manifest, logo and fixtures.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub logo: Vec<u8>,
    /// File name → fixture document.
    pub fixtures: Vec<(String, Value)>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    by_slug: BTreeMap<String, Arc<Loaded>>,
}

/// A manifest that cannot be loaded, naming the file, the field and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct BadManifest {
    pub file: String,
    pub problem: String,
}

impl Catalog {
    /// Loads every built-in integration; the first broken manifest is an error.
    pub fn builtin() -> Result<Catalog, BadManifest> {
        let mut files: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for path in Builtin::iter() {
            let Some((folder, rest)) = path.split_once('/') else { continue };
            let data = Builtin::get(&path).map(|f| f.data.into_owned()).unwrap_or_default();
            files.entry(folder.to_string()).or_default().insert(rest.to_string(), data);
        }
        Self::from_files(files)
    }

    /// Loads integrations from a folder on disk (one sub-folder each), as partners do while writing one.
    pub fn from_dir(dir: &std::path::Path) -> Result<Catalog, BadManifest> {
        let io = |e: std::io::Error, p: &std::path::Path| BadManifest { file: p.display().to_string(), problem: e.to_string() };
        let mut files: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(e, dir))? {
            let folder = entry.map_err(|e| io(e, dir))?.path();
            if !folder.is_dir() {
                continue;
            }
            let name = folder.file_name().unwrap_or_default().to_string_lossy().to_string();
            let mut found = BTreeMap::new();
            for sub in ["", "fixtures"] {
                let d = folder.join(sub);
                let Ok(read) = std::fs::read_dir(&d) else { continue };
                for f in read.flatten().map(|e| e.path()).filter(|p| p.is_file()) {
                    let rel = format!("{sub}{}{}", if sub.is_empty() { "" } else { "/" }, f.file_name().unwrap_or_default().to_string_lossy());
                    found.insert(rel, std::fs::read(&f).map_err(|e| io(e, &f))?);
                }
            }
            files.insert(name, found);
        }
        Self::from_files(files)
    }

    fn from_files(files: BTreeMap<String, BTreeMap<String, Vec<u8>>>) -> Result<Catalog, BadManifest> {
        let mut by_slug = BTreeMap::new();
        for (folder, files) in files {
            let loaded = load_folder(&folder, &files)?;
            by_slug.insert(loaded.manifest.slug.clone(), Arc::new(loaded));
        }
        Ok(Catalog { by_slug })
    }

    pub fn get(&self, slug: &str) -> Option<&Arc<Loaded>> {
        self.by_slug.get(slug)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Loaded>> {
        self.by_slug.values()
    }

    /// The catalog list, sorted by name, filtered by text (name, slug, description) and category.
    pub fn items(&self, q: Option<&str>, category: Option<&str>) -> Vec<CatalogItem> {
        let q = q.map(str::to_lowercase).filter(|q| !q.is_empty());
        let mut items: Vec<CatalogItem> = self
            .all()
            .map(|l| &l.manifest)
            .filter(|m| category.is_none_or(|c| m.categories.iter().any(|mc| mc.eq_ignore_ascii_case(c))))
            .filter(|m| {
                q.as_ref().is_none_or(|q| {
                    m.name.to_lowercase().contains(q) || m.slug.contains(q.as_str()) || m.description.to_lowercase().contains(q)
                })
            })
            .map(item)
            .collect();
        items.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()));
        items
    }

    /// Problems `integrations lint` reports beyond loading: fixture coverage.
    pub fn lint(&self) -> Vec<String> {
        let mut p = Vec::new();
        for l in self.all() {
            let m = &l.manifest;
            let file = format!("integrations/{}", m.slug);
            if l.fixtures.len() < 5 {
                p.push(format!("{file}/fixtures: {} fixtures, at least 5 are needed", l.fixtures.len()));
            }
            for a in &m.actions {
                let covered = l.fixtures.iter().any(|(_, f)| fixtures::expected_actions(f).any(|k| k == a.key));
                if !covered {
                    p.push(format!("{file}/fixtures: no fixture expects a request from action '{}'", a.key));
                }
            }
            if !l.fixtures.iter().any(|(_, f)| fixtures::expects_rejection(f)) {
                p.push(format!("{file}/fixtures: no fixture expects a rejection or invalid settings"));
            }
        }
        p
    }
}

/// The catalog's short form of a manifest.
pub fn item(m: &Manifest) -> CatalogItem {
    CatalogItem {
        slug: m.slug.clone(),
        name: m.name.clone(),
        version: m.version.clone(),
        description: m.description.clone(),
        logo: format!("/api/catalog/{}/logo.svg", m.slug),
        color: m.branding.color.clone(),
        categories: m.categories.clone(),
        capabilities: serde_json::to_value(&m.capabilities).unwrap_or_default(),
    }
}

fn load_folder(folder: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Loaded, BadManifest> {
    let file = format!("integrations/{folder}/manifest.toml");
    let bad = |problem: String| BadManifest { file: file.clone(), problem };
    let text = files.get("manifest.toml").ok_or_else(|| bad("is missing".into()))?;
    let manifest = parse_manifest(&String::from_utf8_lossy(text)).map_err(bad)?;
    if manifest.slug != folder {
        return Err(bad(format!("slug: '{}' differs from the folder name '{folder}'", manifest.slug)));
    }
    let mut problems = check(&manifest);
    problems.extend(check_manifest(&manifest));
    if let Some(h) = &manifest.handler {
        if !handlers::known(h) {
            problems.push(format!("handler: '{h}' is not a handler of this build"));
        }
    }
    if let Some(p) = problems.into_iter().next() {
        return Err(bad(p));
    }
    let logo = files
        .get(&manifest.branding.logo)
        .filter(|l| String::from_utf8_lossy(l).contains("<svg"))
        .cloned()
        .ok_or_else(|| bad(format!("branding.logo: {} is missing or not an SVG", manifest.branding.logo)))?;
    let mut fixtures = Vec::new();
    for (name, data) in files.iter().filter(|(n, _)| n.starts_with("fixtures/") && n.ends_with(".json")) {
        let doc: Value = serde_json::from_slice(data).map_err(|e| BadManifest {
            file: format!("integrations/{folder}/{name}"),
            problem: format!("not JSON: {e}"),
        })?;
        fixtures.push((name.trim_start_matches("fixtures/").to_string(), doc));
    }
    Ok(Loaded { manifest, logo, fixtures })
}

/// Parses manifest TOML; an error names the field (`actions[0].request.url`) and the problem.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().to_string();
        if path.is_empty() || path == "." {
            msg
        } else {
            format!("{path}: {msg}")
        }
    })
}
