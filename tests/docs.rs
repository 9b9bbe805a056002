//! The docs' relative links (README.md, DEVELOPERS.md, BENCHMARKS.md, docs/*.md) name files that
//! exist, so a moved or renamed file breaks a test, not a reader's click.

use std::path::{Path, PathBuf};

fn pages(root: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> =
        ["README.md", "DEVELOPERS.md", "BENCHMARKS.md"].iter().map(|p| root.join(p)).filter(|p| p.exists()).collect();
    if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
        pages.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")));
    }
    pages
}

/// The targets of `[text](target)` links in markdown, without their `#anchor`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = vec![];
    for part in text.split("](").skip(1) {
        let Some(end) = part.find(')') else { continue };
        let target = part[..end].split('#').next().unwrap().trim();
        let external = target.contains("://") || target.starts_with("mailto:");
        if !target.is_empty() && !external {
            out.push(target.to_string());
        }
    }
    out
}

#[test]
fn relative_links_name_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = vec![];
    for page in pages(root) {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for target in link_targets(&text) {
            if !dir.join(&target).exists() {
                broken.push(format!("{}: {target}", page.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing:\n{}", broken.join("\n"));
}

#[test]
fn link_targets_are_read_as_written() {
    let t = link_targets("see [a](docs/a.md#x), [b](https://x.org/y) and ![c](c.png) [d](#here)");
    assert_eq!(t, ["docs/a.md", "c.png"]);
}
