//! Architecture invariants, checked by reading the source (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn all_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn only_the_libvirt_module_imports_virt() {
    for (file, text) in all_sources() {
        if file == "src/hv/libvirt.rs" {
            assert!(
                text.contains("use virt::"),
                "hv/libvirt.rs should be the virt user"
            );
            continue;
        }
        let offending: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("use virt") || l.contains(" virt::"))
            .collect();
        assert!(
            offending.is_empty(),
            "{file} uses virt directly: {offending:?}"
        );
    }
}

#[test]
fn plan_does_no_io() {
    let (_, text) = all_sources()
        .into_iter()
        .find(|(f, _)| f == "src/plan.rs")
        .unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    for forbidden in [
        "std::fs",
        "std::process",
        "Command::new",
        "std::net::TcpStream",
        "::now()",
        "File::",
    ] {
        assert!(
            !code.contains(forbidden),
            "src/plan.rs must not do IO, found {forbidden}"
        );
    }
}
