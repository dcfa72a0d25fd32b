//! The import check of `host/src`: layers point down, and no two top-level
//! modules need each other.
//!
//! Every file is parsed with `syn`; every path that names another top-level
//! module (`crate::db::…`, or `super::…` that climbs out of its own top-level
//! module) is an edge of a graph between the top-level modules (`src/X.rs` or
//! `src/X/`). Paths inside macro calls are found in their tokens. The crate
//! roots (`lib.rs`, `main.rs`) declare the modules and are left out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The modules that may import the HTTP layer: it is the top of the stack.
const TOP: [&str; 2] = ["server", "cli"];

/// One path in `file` (relative to `src`) by which module `from` names module `to`.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub file: String,
    pub path: String,
}

/// What the check found; both lists empty means the layering holds.
#[derive(Debug, Default)]
pub struct Report {
    /// Imports of `server` or `cli` from any module below them.
    pub upward: Vec<Edge>,
    /// Cycles between top-level modules, one example path per step.
    pub cycles: Vec<Vec<Edge>>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.upward.is_empty() && self.cycles.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.upward.is_empty() {
            writeln!(f, "{} upward imports (of {} from a module below them):", self.upward.len(), TOP.join(" or "))?;
            for edge in &self.upward {
                writeln!(f, "  {} -> {}: {} uses {}", edge.from, edge.to, edge.file, edge.path)?;
            }
        }
        if !self.cycles.is_empty() {
            writeln!(f, "{} import cycles between top-level modules:", self.cycles.len())?;
            for cycle in &self.cycles {
                let mut names: Vec<&str> = cycle.iter().map(|e| e.from.as_str()).collect();
                names.push(&cycle[0].from);
                writeln!(f, "  {}", names.join(" -> "))?;
                for edge in cycle {
                    writeln!(f, "    {} -> {}: {} uses {}", edge.from, edge.to, edge.file, edge.path)?;
                }
            }
        }
        Ok(())
    }
}

/// Checks the crate whose sources are in `src`.
pub fn check(src: &Path) -> anyhow::Result<Report> {
    let edges = edges(src)?;
    let upward = edges.iter().filter(|e| TOP.contains(&e.to.as_str()) && !TOP.contains(&e.from.as_str())).cloned();
    Ok(Report { upward: upward.collect(), cycles: cycles(&edges) })
}

/// Every edge between two different top-level modules of `src`, sorted by file.
pub fn edges(src: &Path) -> anyhow::Result<Vec<Edge>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_path(src, f).first().cloned()).collect();
    let mut edges = Vec::new();
    for file in &files {
        let path = module_path(src, file);
        let Some(from) = path.first().cloned() else { continue };
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let parsed = syn::parse_file(&text).with_context(|| format!("cannot parse {}", file.display()))?;
        let mut paths = Paths { module: path, found: Vec::new() };
        paths.visit_file(&parsed);
        let shown = file.strip_prefix(src).unwrap_or(file).display().to_string();
        for (to, path) in paths.found {
            if to != from && modules.contains(&to) && !edges.iter().any(|e: &Edge| e.file == shown && e.path == path) {
                edges.push(Edge { from: from.clone(), to, file: shown.clone(), path });
            }
        }
    }
    Ok(edges)
}

/// Every `.rs` file below `dir`, in no particular order.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The module a file defines, as a path from the crate root (empty for the roots).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut path: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if path.last().is_some_and(|last| last == "mod") || path == ["lib"] || path == ["main"] {
        path.pop();
    }
    path
}

/// Collects `(top-level module, path as written)` for each path of a file.
struct Paths {
    /// The module being visited (inline `mod` blocks deepen it).
    module: Vec<String>,
    found: Vec<(String, String)>,
}

impl Paths {
    /// The top-level module that `segments` leads into, if it leaves the root.
    fn record(&mut self, segments: &[String]) {
        let target = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1),
            Some("super") => {
                let up = segments.iter().take_while(|s| *s == "super").count();
                match self.module.len().checked_sub(up) {
                    Some(0) => segments.get(up),
                    Some(_) => self.module.first(),
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(target) = target.cloned() {
            self.found.push((target, segments.join("::")));
        }
    }

    /// Paths written inside a macro call: `crate` or `super` followed by `::`.
    fn record_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.record_tokens(group.stream()),
                // Not the inner `super` of `super::super::`: the first one reads the whole path.
                TokenTree::Ident(ident) if (ident == "crate" || ident == "super") && !after_colons(&tokens[..i]) => {
                    let segments = path_from_tokens(&tokens[i..]);
                    if segments.len() > 1 {
                        self.record(&segments);
                    }
                }
                _ => {}
            }
        }
    }
}

fn after_colons(before: &[TokenTree]) -> bool {
    matches!(before.last(), Some(TokenTree::Punct(p)) if p.as_char() == ':')
}

/// The `a::b::c` that starts `tokens`, as identifiers.
fn path_from_tokens(tokens: &[TokenTree]) -> Vec<String> {
    let mut segments = Vec::new();
    let mut rest = tokens;
    while let [TokenTree::Ident(ident), more @ ..] = rest {
        segments.push(ident.to_string());
        match more {
            [TokenTree::Punct(a), TokenTree::Punct(b), after @ ..] if a.as_char() == ':' && b.as_char() == ':' => {
                rest = after;
            }
            _ => break,
        }
    }
    segments
}

/// Each leaf of a `use` tree as the path that leads to it.
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_paths(&path.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(name) if name.ident == "self" => out.push(prefix.clone()),
        syn::UseTree::Name(name) => out.push([prefix.as_slice(), &[name.ident.to_string()]].concat()),
        syn::UseTree::Rename(rename) => out.push([prefix.as_slice(), &[rename.ident.to_string()]].concat()),
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(group) => group.items.iter().for_each(|item| use_paths(item, prefix, out)),
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        use_paths(&item.tree, &mut Vec::new(), &mut paths);
        for path in paths {
            self.record(&path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.record_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        syn::visit::visit_item_mod(self, item);
        self.module.pop();
    }
}

/// Every cycle that runs through some edge: for each edge `a -> b` between two
/// modules that reach each other, the shortest way back from `b` to `a`. Each
/// edge of a cycle is then in at least one of them, so removing the listed
/// edges (or moving what they name) is the whole to-do list.
fn cycles(edges: &[Edge]) -> Vec<Vec<Edge>> {
    // One example path per pair of modules: the first, by file.
    let mut first: BTreeMap<(&str, &str), &Edge> = BTreeMap::new();
    for edge in edges {
        first.entry((&edge.from, &edge.to)).or_insert(edge);
    }
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in first.keys() {
        next.entry(from).or_default().push(to);
    }
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for (from, to) in first.keys() {
        let Some(back) = shortest(&next, to, from) else { continue };
        // `back` runs to .. from; the cycle is from -> to -> .. -> from.
        let mut names: Vec<&str> = vec![from];
        names.extend(&back[..back.len() - 1]);
        let start = names.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
        names.rotate_left(start);
        if seen.insert(names.clone()) {
            let steps = (0..names.len()).map(|i| first[&(names[i], names[(i + 1) % names.len()])].clone());
            found.push(steps.collect());
        }
    }
    found
}

/// The modules on a shortest path `from` .. `to`, both included.
fn shortest<'a>(next: &BTreeMap<&'a str, Vec<&'a str>>, from: &'a str, to: &'a str) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![at];
            while let Some(prev) = came_from.get(path[path.len() - 1]) {
                path.push(prev);
            }
            path.reverse();
            return Some(path);
        }
        for &n in next.get(at).into_iter().flatten() {
            if n != from && !came_from.contains_key(n) {
                came_from.insert(n, at);
                queue.push_back(n);
            }
        }
    }
    None
}

/// Writes a source tree of `(path, contents)` into a fresh temp dir.
fn tree(files: &[(&str, &str)]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().context("no parent")?)?;
        std::fs::write(path, contents)?;
    }
    Ok(dir)
}

/// The report as one line per finding, to compare in tests.
fn summary(report: &Report) -> String {
    let mut out = String::new();
    for edge in &report.upward {
        let _ = writeln!(out, "up {} -> {} {} {}", edge.from, edge.to, edge.file, edge.path);
    }
    for cycle in &report.cycles {
        let steps: Vec<String> = cycle.iter().map(|e| format!("{}->{} {} {}", e.from, e.to, e.file, e.path)).collect();
        let _ = writeln!(out, "cycle {}", steps.join(", "));
    }
    out
}

#[test]
fn a_clean_tree_passes() -> anyhow::Result<()> {
    let dir = tree(&[
        ("lib.rs", "pub mod server; pub mod db; pub mod error; use crate::server::App;"),
        ("server/mod.rs", "use crate::db::Db; use crate::{error::Error, db as _}; mod routes;"),
        ("server/routes.rs", "use super::super::db; fn f() { super::App::new(); }"),
        ("db.rs", "use crate::error::Error; mod inner { use super::*; use super::super::error; }"),
        ("error.rs", "pub enum Error {} #[cfg(test)] mod tests { use super::*; }"),
        ("cli.rs", "use crate::server::App; use crate::db;"),
    ])?;
    let report = check(dir.path())?;
    assert!(report.is_clean(), "{report}");
    let edges = edges(dir.path())?;
    let pairs: BTreeSet<(&str, &str)> = edges.iter().map(|e| (e.from.as_str(), e.to.as_str())).collect();
    let expected = [("cli", "db"), ("cli", "server"), ("db", "error"), ("server", "db"), ("server", "error")];
    assert_eq!(pairs, expected.into_iter().collect(), "{edges:?}");
    Ok(())
}

#[test]
fn an_upward_import_fails_naming_the_file_and_path() -> anyhow::Result<()> {
    let dir = tree(&[
        ("lib.rs", "pub mod server; pub mod error; pub mod invoke;"),
        ("server/mod.rs", "pub mod body;"),
        ("server/body.rs", "pub fn full() {}"),
        ("error.rs", "fn f() { let _ = crate::server::body::full(); }"),
        ("invoke/mod.rs", "mod run;"),
        ("invoke/run.rs", "fn f() { let _ = format!(\"{:?}\", super::super::cli::Cli::new()); }"),
        ("cli.rs", ""),
    ])?;
    let report = check(dir.path())?;
    assert_eq!(
        summary(&report),
        "up error -> server error.rs crate::server::body::full\n\
         up invoke -> cli invoke/run.rs super::super::cli::Cli::new\n"
    );
    Ok(())
}

#[test]
fn a_cycle_fails_naming_each_step() -> anyhow::Result<()> {
    let dir = tree(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        ("a.rs", "use crate::b::B;"),
        ("b/mod.rs", "mod x;"),
        ("b/x.rs", "fn f(_: crate::c::C) {}"),
        ("c.rs", "use crate::{a, d::D};"),
        ("d.rs", "pub struct D;"),
    ])?;
    let report = check(dir.path())?;
    assert_eq!(summary(&report), "cycle a->b a.rs crate::b::B, b->c b/x.rs crate::c::C, c->a c.rs crate::a\n");
    assert_eq!(report.to_string().lines().nth(1), Some("  a -> b -> c -> a"));
    Ok(())
}
