//! The docs' relative links (README.md, DEVELOPERS.md, BENCHMARKS.md, docs/*.md) name files that
//! exist and headings that exist in them, so a moved or renamed file or section breaks a test,
//! not a reader's click; and every flag of every command's `--help` is in the user guide's flag
//! reference exactly once.

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
    links(text).into_iter().map(|(path, _)| path).filter(|p| !p.is_empty()).collect()
}

/// The `(path, anchor)` of every relative `[text](path#anchor)` link (path empty: this page).
fn links(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = vec![];
    for part in text.split("](").skip(1) {
        let Some(end) = part.find(')') else { continue };
        let target = part[..end].trim();
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (target.to_string(), None),
        };
        out.push((path, anchor));
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces to `-`.
fn slug(heading: &str) -> String {
    let h = heading.trim_start_matches('#').trim().to_lowercase();
    h.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown page's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = vec![];
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(slug(line));
        }
    }
    out
}

#[test]
fn anchors_name_headings_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = vec![];
    for page in pages(root) {
        let text = std::fs::read_to_string(&page).unwrap();
        for (path, anchor) in links(&text) {
            let Some(anchor) = anchor else { continue };
            let target = if path.is_empty() { page.clone() } else { page.parent().unwrap().join(&path) };
            if target.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let Ok(target_text) = std::fs::read_to_string(&target) else { continue };
            if !anchors(&target_text).contains(&anchor) {
                broken.push(format!("{}: {path}#{anchor}", page.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to headings that do not exist:\n{}", broken.join("\n"));
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("## The convolutional model (`--arch dcgan`)"), "the-convolutional-model---arch-dcgan");
    assert_eq!(slug("### The CPU backend's threads"), "the-cpu-backends-threads");
    assert_eq!(slug("## Set-up"), "set-up");
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

/// `shadergan ARGS -h`'s text (clap's short help: one paragraph per flag).
fn help(args: &[&str]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_shadergan")).args(args).arg("-h").output().unwrap();
    assert!(o.status.success(), "shadergan {args:?} -h failed");
    String::from_utf8(o.stdout).unwrap()
}

/// The entries of one `Name:` section of clap's help (`Commands:`, `Arguments:`, `Options:`):
/// each item's first line (the command, argument or flag) and its description.
fn help_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    let mut inside = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            inside = line == name;
            continue;
        }
        if !inside {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let item = line.trim();
        if indent >= 10 {
            // A description on its own line under an option.
            let last = out.last_mut().unwrap();
            last.1 = [last.1.as_str(), item].join(" ").trim().to_string();
        } else if let Some((head, desc)) = item.split_once("  ") {
            out.push((head.trim().to_string(), desc.trim().to_string()));
        } else {
            out.push((item.to_string(), String::new()));
        }
    }
    out
}

/// Every command that takes flags (`classifier train`, not `classifier`), as its words.
fn leaf_commands(path: Vec<String>) -> Vec<Vec<String>> {
    let args: Vec<&str> = path.iter().map(String::as_str).collect();
    let subs = help_section(&help(&args), "Commands:");
    if subs.is_empty() {
        return vec![path];
    }
    let mut out = vec![];
    for (name, _) in subs.into_iter().filter(|(n, _)| n != "help") {
        let mut p = path.clone();
        p.push(name);
        out.extend(leaf_commands(p));
    }
    out
}

fn table_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The user guide's flag reference, written from every command's `--help`: each flag once, under
/// the first command that has it with the same help (export-web takes train's flags: they are
/// listed under train).
fn flag_reference() -> String {
    let mut out = String::from(
        "## Flag reference\n\nEvery flag of every command, as `shadergan COMMAND -h` prints it (a test keeps this \
         section equal to\nthe binary's help: `SHADERGAN_BLESS=1 cargo test --release --test docs` rewrites it). A flag \
         that several\ncommands take with the same meaning is listed under the first.\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for cmd in leaf_commands(vec![]) {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let text = help(&args);
        let about = text.lines().next().unwrap_or("");
        out += &format!("\n### shadergan {}\n\n{about}\n", cmd.join(" "));
        let mut rows = vec![];
        for (item, desc) in help_section(&text, "Arguments:") {
            rows.push(format!("| `{}` | {} |", table_cell(&item), table_cell(&desc)));
        }
        let mut shared = vec![];
        for (item, desc) in help_section(&text, "Options:") {
            let flag = item.split([' ', '<']).find(|w| w.starts_with("--")).unwrap_or(&item).to_string();
            if flag == "--help" || flag == "--version" {
                continue;
            }
            // The same flag with the same words is listed once; one that means something else
            // in this command (export-web's --out) is listed here too.
            if !seen.insert((flag.clone(), desc.clone())) {
                shared.push(format!("`{flag}`"));
                continue;
            }
            rows.push(format!("| `{}` | {} |", table_cell(&item), table_cell(&desc)));
        }
        if !rows.is_empty() {
            out += &format!("\n| | |\n|---|---|\n{}\n", rows.join("\n"));
        }
        if !shared.is_empty() {
            out += &format!("\nAlso, as above: {}.\n", shared.join(", "));
        }
    }
    out
}

#[test]
fn every_flag_is_in_the_user_guide_once_as_help_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("docs/guide.md");
    let guide = std::fs::read_to_string(&path).unwrap();
    let start = guide.find("## Flag reference").expect("docs/guide.md has a '## Flag reference' section");
    let want = flag_reference();
    if std::env::var("SHADERGAN_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, format!("{}{want}", &guide[..start])).unwrap();
        return;
    }
    assert!(
        guide[start..] == want,
        "docs/guide.md's flag reference differs from the binary's --help (a flag added, renamed or reworded): \
         SHADERGAN_BLESS=1 cargo test --release --test docs rewrites it; read the diff"
    );
}
