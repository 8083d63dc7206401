//! `switchyard integrations list | lint | test`.

use super::{fixtures, Catalog};
use crate::cli::{IntegrationsCommand, Usage};
use std::path::Path;

fn load(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    Ok(match dir {
        Some(d) => Catalog::from_dir(d)?,
        None => Catalog::builtin()?,
    })
}

pub fn run(command: IntegrationsCommand) -> anyhow::Result<()> {
    match command {
        IntegrationsCommand::List { dir } => {
            for l in load(dir.as_deref())?.all() {
                let m = &l.manifest;
                println!("{}\t{}\t{}\t{}", m.slug, m.version, m.name, m.categories.join(", "));
            }
            Ok(())
        }
        IntegrationsCommand::Lint { dir } => {
            let catalog = load(dir.as_deref())?;
            let problems = catalog.lint();
            for p in &problems {
                println!("{p}");
            }
            let n = catalog.all().count();
            if problems.is_empty() {
                println!("{n} integrations, no problems");
                Ok(())
            } else {
                anyhow::bail!("{} problem(s) in {n} integrations", problems.len())
            }
        }
        IntegrationsCommand::Test { slug, dir } => {
            let catalog = load(dir.as_deref())?;
            let chosen: Vec<_> = match &slug {
                Some(s) => vec![catalog.get(s).ok_or_else(|| Usage(format!("integrations test: no integration '{s}'")))?],
                None => catalog.all().collect(),
            };
            let (mut passed, mut failed) = (0, 0);
            for l in chosen {
                for (name, doc) in &l.fixtures {
                    match fixtures::run(l, doc) {
                        Ok(()) => {
                            passed += 1;
                            println!("ok   {}/{name}", l.manifest.slug);
                        }
                        Err(why) => {
                            failed += 1;
                            println!("FAIL {}/{name}: {why}", l.manifest.slug);
                        }
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                anyhow::bail!("{failed} fixture(s) failed");
            }
            Ok(())
        }
    }
}
