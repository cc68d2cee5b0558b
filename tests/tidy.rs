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

// ---------------------------------------------------------------------------------------------
// The dependency graph: which module may name which.
//
// Every `src/**/*.rs` is read as code only (comments and string literals blanked, `#[cfg(test)]`
// items cut out by brace matching). Every `use` tree and every inline path that starts with
// `crate`, `self`, `super`, a child module or (in main.rs) `reclab` is resolved to the module it
// names: the longest prefix that is a module file, `src/a/b.rs` or `src/a/b/mod.rs`.

/// Folder-level table: a folder may name itself and these folders, nothing else. `main` is
/// src/main.rs (the binary, which names the library as `reclab::`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("base", &[]),
    ("spec", &["base"]),
    ("xml", &["base"]),
    ("hv", &["base"]),
    ("restore", &["base", "spec", "xml", "hv"]),
    ("lab", &["base", "spec", "xml", "hv", "restore"]),
    ("verify", &["base", "spec", "hv"]),
    ("report", &["base", "verify"]),
    (
        "drill",
        &[
            "base", "spec", "xml", "hv", "restore", "lab", "verify", "report",
        ],
    ),
    ("ops", &["base", "spec", "xml", "hv", "lab", "report"]),
    ("access", &["base", "xml", "hv", "lab", "report"]),
    (
        "app",
        &[
            "base", "spec", "xml", "hv", "restore", "lab", "verify", "report", "drill", "ops",
            "access",
        ],
    ),
    (
        "main",
        &[
            "base", "spec", "xml", "hv", "restore", "lab", "verify", "report", "drill", "ops",
            "access", "app",
        ],
    ),
];

/// Modules that do no IO: no files, processes, network, environment or clock. `lab::plan` may
/// name only these (and is one itself); each of them may name only the others.
const PURE: &[&str] = &[
    "base::duration",
    "base::names",
    "base::pattern",
    "base::template",
    "spec::model",
    "spec::model::check",
    "spec::model::notify",
    "xml",
    "xml::tree",
    "xml::domain",
    "xml::network",
    "xml::facts",
    "xml::disk",
    "lab::plan",
    "lab::record",
    "lab::resolved",
    "lab::services::rules",
    "restore::record",
];

/// MERGE(H1): helper H1 moves the pure items that `lab::plan` takes from impure modules into
/// the modules below. Until that lands these do not exist, and plan still names the impure
/// modules in [`PLAN_STILL_NAMES`]. When H1 is merged, empty both lists: the test then holds
/// plan to [`PURE`] alone (and fails, naming the module, if one of the lists is stale).
const AWAITING_H1: &[&str] = &[];
/// MERGE(H1): empty this list (see [`AWAITING_H1`]).
const PLAN_STILL_NAMES: &[&str] = &[];

/// Non-test code names of IO; none may appear in a [`PURE`] module. `std::net` is allowed
/// for its address values (`Ipv4Addr`, ...), not for sockets; `File` as a type, not as an enum
/// variant (`Resource::File`).
const IO_NAMES: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net",
    "std::env",
    "::now()",
    "Command",
    "File",
];
const NET_VALUES: &[&str] = &["Ipv4Addr", "Ipv6Addr", "IpAddr", "SocketAddr"];

/// IO a pure module still does, with the reason: (module, name, why).
const IO_EXEMPT: &[(&str, &str, &str)] = &[(
    "spec",
    "std::fs",
    "spec::load reads the lab file before it parses it",
)];

/// External crates confined to one place: the crate and the modules that may name it.
const CONFINED: &[(&str, &[&str])] = &[
    // The libvirt binding: everything else goes through the `hv::Hypervisor` trait.
    ("virt", &["hv::libvirt"]),
    // The core is synchronous; only the web console server runs an async runtime.
    ("tokio", &["access::serve"]),
    ("tokio_rustls", &["access::serve"]),
    ("axum", &["access::serve"]),
    ("hyper", &["access::serve"]),
    ("hyper_util", &["access::serve"]),
];

struct Src {
    /// "src/lab/plan.rs"
    file: String,
    /// ["lab", "plan"]; [] for lib.rs, ["main"] for main.rs
    module: Vec<String>,
    /// Code only: comments, strings and `#[cfg(test)]` items blanked, newlines kept.
    code: String,
}

/// One reference from a file to a module of the crate or to an external crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    line: usize,
    /// The path as written after resolving `self`/`super`: ["crate", "lab", "RunDir"] or
    /// ["virt", "connect"] (external).
    path: Vec<String>,
    /// The module it names (the longest module prefix); None for an external crate.
    target: Option<Vec<String>>,
}

fn crate_sources() -> Vec<Src> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root.join("src")).unwrap();
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                module.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            Src {
                file: format!("src/{}", rel.display()),
                module,
                code: cut_test_items(&code_only(&text)),
            }
        })
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The text with comments and the contents of string and char literals replaced by spaces
/// (newlines kept, so line numbers stay). Lifetimes are kept.
fn code_only(text: &str) -> String {
    let s = text.as_bytes();
    let mut out = s.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'/' && s.get(i + 1) == Some(&b'/') {
            let end = s[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(s.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == b'/' && s.get(i + 1) == Some(&b'*') {
            let (mut depth, mut j) = (1, i + 2);
            while j < s.len() && depth > 0 {
                if s[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if s[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(s.len()));
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '\u{1F600}', '{') or a lifetime ('a, 'static).
            let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
            if s.get(i + 1) == Some(&b'\\') {
                let mut j = i + 3;
                while j < s.len() && s[j] != b'\'' {
                    j += 1;
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            } else if s.get(i + 1 + len) == Some(&b'\'') {
                blank(&mut out, i + 1, i + 1 + len);
                i += len + 2;
            } else {
                i += 1;
            }
        } else if is_ident(c) {
            let mut j = i;
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
            let word = &s[i..j];
            // Raw strings: r"..", r#".."#, br"..", cr#".."#.
            if matches!(word, b"r" | b"br" | b"cr") && matches!(s.get(j), Some(b'"') | Some(b'#')) {
                let hashes = s[j..].iter().take_while(|&&b| b == b'#').count();
                if s.get(j + hashes) == Some(&b'"') {
                    let mut close = b"\"".to_vec();
                    close.extend(std::iter::repeat_n(b'#', hashes));
                    let body = j + hashes + 1;
                    let end = s[body..]
                        .windows(close.len())
                        .position(|w| w == close.as_slice())
                        .map_or(s.len(), |p| body + p);
                    blank(&mut out, body, end);
                    i = end + close.len();
                    continue;
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Index just past the bracket that closes the one at `open` (`{`, `[` or `(`), in code only.
fn matching(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &b) in s.iter().enumerate().skip(open) {
        match b {
            b'{' | b'[' | b'(' => depth += 1,
            b'}' | b']' | b')' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// Blanks every item marked `#[cfg(test)]` (a `mod tests { .. }`, a `fn`, an `impl`, a `use`),
/// from the attribute to the end of the item: its matching `}` or its `;`.
fn cut_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let start = from + p;
        let s = code.as_bytes();
        let mut j = start + "#[cfg(test)]".len();
        // Further attributes and whitespace, then the item up to its body or `;`.
        let end = loop {
            match s.get(j) {
                None => break s.len(),
                Some(b'#') if s.get(j + 1) == Some(&b'[') => j = matching(s, j + 1),
                Some(b'{') => break matching(s, j),
                Some(b'(') | Some(b'[') => j = matching(s, j),
                Some(b';') => break j + 1,
                Some(_) => j += 1,
            }
        };
        for b in &mut out[start..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).unwrap()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Colons,
    Punct(u8),
}

fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let s = code.as_bytes();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < s.len() {
        let c = s[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if is_ident(c) {
            let mut j = i;
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
            out.push((Tok::Ident(code[i..j].to_string()), line));
            i = j;
        } else if c == b':' && s.get(i + 1) == Some(&b':') {
            out.push((Tok::Colons, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// Expands the use tree starting at `toks[*i]` into full paths (`self` in a group names the
/// group's own path; `as` renames are dropped). Stops after the tree.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while let Some((t, _)) = toks.get(*i) {
        match t {
            Tok::Colons => *i += 1,
            Tok::Ident(w) => {
                if w != "self" || path.is_empty() {
                    path.push(w.clone());
                }
                *i += 1;
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::Colons) {
                    continue;
                }
                if toks.get(*i).map(|t| &t.0) == Some(&Tok::Ident("as".into())) {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            Tok::Punct(b'*') => {
                *i += 1;
                out.push(path);
                return;
            }
            Tok::Punct(b'{') => {
                *i += 1;
                while let Some((t, _)) = toks.get(*i) {
                    match t {
                        Tok::Punct(b'}') => break,
                        Tok::Punct(b',') => *i += 1,
                        _ => use_tree(toks, i, path.clone(), out),
                    }
                }
                *i += 1;
                return;
            }
            _ => return,
        }
    }
}

/// The module files: ["lab", "plan"], ["lab"], ...
fn module_set(srcs: &[Src]) -> Vec<Vec<String>> {
    srcs.iter().map(|s| s.module.clone()).collect()
}

/// Turns a path as written in `from` into an absolute one (["crate", ...]) or leaves an external
/// one (["std", ...]) as it is.
fn absolute(from: &[String], path: &[String], modules: &[Vec<String>]) -> Vec<String> {
    let Some(first) = path.first() else {
        return Vec::new();
    };
    let mut base: Vec<String> = from.to_vec();
    let rest: &[String] = match first.as_str() {
        "crate" | "reclab" => {
            base.clear();
            &path[1..]
        }
        "self" => &path[1..],
        "super" => {
            let mut k = 0;
            while path.get(k).is_some_and(|s| s == "super") {
                base.pop();
                k += 1;
            }
            &path[k..]
        }
        _ => {
            let mut child = from.to_vec();
            child.push(first.clone());
            if !modules.contains(&child) {
                return path.to_vec();
            }
            path
        }
    };
    let mut abs = vec!["crate".to_string()];
    abs.extend(base);
    abs.extend(rest.iter().cloned());
    abs
}

/// The longest prefix of an absolute path that is a module.
fn module_of(abs: &[String], modules: &[Vec<String>]) -> Vec<String> {
    let segs = &abs[1..];
    (0..=segs.len())
        .rev()
        .map(|n| segs[..n].to_vec())
        .find(|m| modules.contains(m))
        .unwrap_or_default()
}

/// Every use path and every inline crate path of a file, resolved.
fn edges(src: &Src, modules: &[Vec<String>]) -> Vec<Edge> {
    let toks = tokens(&src.code);
    let from = if src.module == ["main"] {
        Vec::new()
    } else {
        src.module.clone()
    };
    // (line, path, written in a `use`)
    let mut raw: Vec<(usize, Vec<String>, bool)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let after_colons = i > 0 && toks[i - 1].0 == Tok::Colons;
        match &toks[i].0 {
            Tok::Ident(w) if w == "use" => {
                let line = toks[i].1;
                i += 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut paths);
                raw.extend(paths.into_iter().map(|p| (line, p, true)));
                continue;
            }
            // A visibility restriction (`pub(in crate::spec)`) names no dependency.
            Tok::Ident(w) if w == "in" && i > 0 && toks[i - 1].0 == Tok::Punct(b'(') => {
                i += 1;
                while toks
                    .get(i)
                    .is_some_and(|t| matches!(t.0, Tok::Ident(_) | Tok::Colons))
                {
                    i += 1;
                }
                continue;
            }
            Tok::Ident(w)
                if !after_colons && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Colons) =>
            {
                let line = toks[i].1;
                let mut path = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Tok::Colons) {
                    match toks.get(j + 1).map(|t| &t.0) {
                        Some(Tok::Ident(n)) => path.push(n.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                raw.push((line, path, false));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    raw.into_iter()
        .filter_map(|(line, path, in_use)| {
            let abs = absolute(&from, &path, modules);
            if abs.first().is_some_and(|f| f == "crate") {
                Some(Edge {
                    line,
                    target: Some(module_of(&abs, modules)),
                    path: abs,
                })
            } else if in_use || path.len() > 1 {
                // `Foo::bar` where Foo is a type is not an edge; an external crate is named
                // at least as `krate::item`.
                Some(Edge {
                    line,
                    target: None,
                    path: abs,
                })
            } else {
                None
            }
        })
        .collect()
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

fn folder(m: &[String]) -> &str {
    m.first().map_or("", String::as_str)
}

/// All crate-internal edges: (file, line, from module, to module).
fn crate_graph() -> Vec<(String, usize, Vec<String>, Vec<String>)> {
    let srcs = crate_sources();
    let modules = module_set(&srcs);
    let mut out = Vec::new();
    for s in &srcs {
        for e in edges(s, &modules) {
            if let Some(t) = e.target {
                out.push((s.file.clone(), e.line, s.module.clone(), t));
            }
        }
    }
    out
}

#[test]
fn folders_depend_only_on_what_the_table_allows() {
    let graph = crate_graph();
    // Not vacuous: the graph has the edges everybody knows about.
    for (a, b) in [
        ("report", "verify"),
        ("lab", "hv"),
        ("drill", "verify"),
        ("main", "app"),
    ] {
        assert!(
            graph
                .iter()
                .any(|(_, _, f, t)| folder(f) == a && folder(t) == b),
            "the parser found no {a} -> {b} edge: it is broken"
        );
    }
    let mut bad = Vec::new();
    for (file, line, from, to) in &graph {
        let (f, t) = (folder(from), folder(to));
        if f == t && !to.is_empty() {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(k, _)| *k == f)
            .unwrap_or_else(|| panic!("{file}: folder '{f}' is not in the table ALLOWED"))
            .1;
        if to.is_empty() || !allowed.contains(&t) {
            bad.push(format!(
                "{file}:{line}: {} -> {} (folder {f} may name only {allowed:?})",
                name(from),
                name(to)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "forbidden dependencies:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_folder_cycle() {
    let graph = crate_graph();
    let mut folders: Vec<&str> = graph.iter().map(|(_, _, f, _)| folder(f)).collect();
    folders.sort();
    folders.dedup();
    let edge = |a: &str, b: &str| {
        graph
            .iter()
            .find(|(_, _, f, t)| folder(f) == a && folder(t) == b)
    };
    // Strongly connected components (Tarjan) of the folder graph.
    struct Tarjan<'a> {
        nodes: Vec<&'a str>,
        succ: Vec<Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        sccs: Vec<Vec<&'a str>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for w in self.succ[v].clone() {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    scc.push(self.nodes[w]);
                    if w == v {
                        break;
                    }
                }
                self.sccs.push(scc);
            }
        }
    }
    let succ = folders
        .iter()
        .map(|a| {
            (0..folders.len())
                .filter(|&j| folders[j] != *a && edge(a, folders[j]).is_some())
                .collect()
        })
        .collect();
    let n = folders.len();
    let mut t = Tarjan {
        nodes: folders.clone(),
        succ,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    // Not vacuous: the graph has the folders (a cycle merges some into one component, which is
    // what the check below reports).
    assert!(
        folders.len() >= 10,
        "only {} folders found: {folders:?}",
        folders.len()
    );
    let mut bad = Vec::new();
    for scc in t.sccs.iter().filter(|c| c.len() > 1) {
        let mut lines = Vec::new();
        for a in scc {
            for b in scc {
                if let Some((file, line, f, to)) = edge(a, b).filter(|_| a != b) {
                    lines.push(format!("  {file}:{line}: {} -> {}", name(f), name(to)));
                }
            }
        }
        bad.push(format!("cycle among {scc:?}, e.g.:\n{}", lines.join("\n")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn plan_and_the_pure_modules_do_no_io() {
    let srcs = crate_sources();
    let modules = module_set(&srcs);
    let module_names: Vec<String> = modules.iter().map(|m| name(m)).collect();
    let mut bad = Vec::new();
    for m in AWAITING_H1 {
        if module_names.contains(&m.to_string()) {
            bad.push(format!("{m} exists now: remove it from AWAITING_H1"));
        }
    }
    for m in PURE.iter().filter(|m| !AWAITING_H1.contains(m)) {
        if !module_names.contains(&m.to_string()) {
            bad.push(format!(
                "pure module {m} does not exist (src/{}.rs)",
                m.replace("::", "/")
            ));
        }
    }
    let plan = srcs
        .iter()
        .find(|s| name(&s.module) == "lab::plan")
        .expect("src/lab/plan.rs");
    let plan_edges = edges(plan, &modules);
    assert!(
        plan_edges.iter().filter(|e| e.target.is_some()).count() >= 5,
        "found almost no imports in lab::plan: the parser is broken"
    );
    for still in PLAN_STILL_NAMES {
        if !plan_edges
            .iter()
            .any(|e| e.target.as_ref().is_some_and(|t| name(t) == *still))
        {
            bad.push(format!(
                "lab::plan no longer names {still}: remove it from PLAN_STILL_NAMES"
            ));
        }
    }
    for s in srcs
        .iter()
        .filter(|s| PURE.contains(&name(&s.module).as_str()))
    {
        let me = name(&s.module);
        for e in edges(s, &modules) {
            let Some(t) = &e.target else { continue };
            let t = name(t);
            let ok = t == me
                || PURE.contains(&t.as_str())
                || (me == "lab::plan" && PLAN_STILL_NAMES.contains(&t.as_str()));
            if !ok {
                bad.push(format!(
                    "{}:{}: {me} -> {t} ({me} is pure: it may name only PURE modules)",
                    s.file, e.line
                ));
            }
        }
        for (n, line) in s.code.lines().enumerate() {
            for io in IO_NAMES {
                if IO_EXEMPT.iter().any(|(m, i, _)| *m == me && i == io) {
                    continue;
                }
                if names_io(line, io) {
                    bad.push(format!("{}:{}: {me} is pure but names {io}", s.file, n + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Whether a line of code names `io` (one of [`IO_NAMES`]).
fn names_io(line: &str, io: &str) -> bool {
    let toks: Vec<Tok> = tokens(line).into_iter().map(|(t, _)| t).collect();
    if io.chars().all(char::is_alphanumeric) {
        // The type: `File::open(..)`, `f: File`, `&File`, `Vec<File>`; not the enum variant
        // `Resource::File` nor its declaration `File,`.
        return toks.iter().enumerate().any(|(k, t)| {
            let prev = k.checked_sub(1).map(|p| &toks[p]);
            *t == Tok::Ident(io.to_string())
                && prev != Some(&Tok::Colons)
                && (toks.get(k + 1) == Some(&Tok::Colons)
                    || matches!(prev, Some(Tok::Punct(b':' | b'<' | b'&' | b'>' | b'('))))
        });
    }
    let squeezed = line.replace(' ', "");
    if io == "std::net" {
        // Sockets are IO; addresses are values. `use std::net::{Ipv4Addr, TcpStream}` names
        // TcpStream.
        return squeezed.match_indices("std::net::").any(|(p, _)| {
            let rest = &squeezed[p + "std::net::".len()..];
            let items = rest.trim_start_matches('{');
            let items = &items[..items.find(['}', ';']).unwrap_or(items.len())];
            items
                .split(',')
                .any(|item| !NET_VALUES.contains(&item.split("::").next().unwrap_or("").trim()))
        }) || squeezed.ends_with("std::net")
            || squeezed.contains("std::net;");
    }
    squeezed.contains(io)
}

#[test]
fn external_crates_stay_in_their_modules() {
    let srcs = crate_sources();
    let modules = module_set(&srcs);
    let mut bad = Vec::new();
    for (krate, homes) in CONFINED {
        let mut seen_at_home = false;
        for s in &srcs {
            let me = name(&s.module);
            let mut hits: Vec<usize> = edges(s, &modules)
                .iter()
                .filter(|e| e.target.is_none() && e.path[0] == *krate)
                .map(|e| e.line)
                .collect();
            // Any other spelling: `extern crate virt`, `<virt::X>`, `&virt::X`, `(virt::x())`.
            for (n, line) in s.code.lines().enumerate() {
                let b = line.as_bytes();
                let named = line.match_indices(krate).any(|(p, _)| {
                    // Not part of a longer name (`libvirt::`) nor a segment of another path
                    // (`hv::virt::`); `::virt::` is the crate.
                    let segment = line[..p].ends_with("::")
                        && p.checked_sub(3).is_some_and(|q| is_ident(b[q]));
                    let before = p.checked_sub(1).map(|q| b[q]);
                    !before.is_some_and(is_ident)
                        && !segment
                        && (line[p + krate.len()..].starts_with("::")
                            || line[..p].trim_end().ends_with("extern crate"))
                });
                if named {
                    hits.push(n + 1);
                }
            }
            hits.sort();
            hits.dedup();
            // A home is a module with its submodules (`access::serve` holds `access::serve::ws`).
            let at_home = homes
                .iter()
                .any(|h| me == *h || me.starts_with(&format!("{h}::")));
            if at_home {
                seen_at_home |= !hits.is_empty();
            } else {
                for l in hits {
                    bad.push(format!(
                        "{}:{l}: {me} names {krate} (only {homes:?} may)",
                        s.file
                    ));
                }
            }
        }
        assert!(
            seen_at_home,
            "{homes:?} no longer names {krate}: update CONFINED"
        );
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The `#[ignore]` reason of every end-to-end test.
const E2E_IGNORE: &str =
    r#"#[ignore = "end-to-end: needs root and a private libvirtd; scripts/test runs it"]"#;

/// Every test in `tests/e2e_*.rs` is ignored with [`E2E_IGNORE`], so that plain `cargo test`
/// reports it as ignored rather than passing it without running it; `scripts/test` runs them
/// with `--ignored`. No test skips itself on an environment variable instead.
#[test]
fn end_to_end_tests_are_ignored_not_skipped() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    sources(&tests, &mut files);
    files.sort();
    let mut count = 0;
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(&tests).unwrap().display().to_string();
        if rel != "tidy.rs" && (text.contains("if !e2e(") || text.contains("fn e2e(")) {
            bad.push(format!(
                "tests/{rel} gates a test on RECLAB_E2E: use {E2E_IGNORE}"
            ));
        }
        if !rel.starts_with("e2e_") {
            continue;
        }
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (n, l) in lines.iter().enumerate() {
            if *l == "#[test]" {
                count += 1;
                if lines.get(n + 1) != Some(&E2E_IGNORE) {
                    bad.push(format!(
                        "tests/{rel}:{}: an end-to-end test without {E2E_IGNORE}",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(count >= 10, "only {count} end-to-end tests found");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The parser itself, on the forms the source uses.
#[test]
fn the_parser_reads_use_trees_paths_and_cfg_test() {
    let text = r####"
//! use crate::doc::Comment;
use crate::a::{b::{C, d}, self as e, f::*};
pub(crate) use super::sib;
use std::fs;
/* use crate::block::{Comment}; */
fn f() -> &'static str { let _ = '{'; let _ = "crate::s::x }"; crate::g::h(); r#"}"# }
#[cfg(test)]
mod tests {
    use crate::test_only::X;
    fn t() { let _ = "}"; if true { crate::nested::y(); } }
}
fn after() { (virt::Connect::open(), &crate::late::Z) }
pub(in crate::vis) fn restricted() {}
"####;
    let module = vec!["lab".to_string(), "plan".to_string()];
    let mods: Vec<Vec<String>> = [
        "a",
        "a::b",
        "a::f",
        "g",
        "late",
        "lab",
        "lab::plan",
        "lab::sib",
    ]
    .iter()
    .map(|m| m.split("::").map(String::from).collect())
    .collect();
    let src = Src {
        file: "x.rs".into(),
        module,
        code: cut_test_items(&code_only(text)),
    };
    let got: Vec<(usize, String, String)> = edges(&src, &mods)
        .into_iter()
        .map(|e| {
            (
                e.line,
                e.path.join("::"),
                e.target.map_or("-".into(), |t| name(&t)),
            )
        })
        .collect();
    let want: Vec<(usize, String, String)> = [
        (3, "crate::a::b::C", "a::b"),
        (3, "crate::a::b::d", "a::b"),
        (3, "crate::a", "a"),
        (3, "crate::a::f", "a::f"),
        (4, "crate::lab::sib", "lab::sib"),
        (5, "std::fs", "-"),
        (7, "crate::g::h", "g"),
        (13, "virt::Connect::open", "-"),
        (13, "crate::late::Z", "late"),
    ]
    .iter()
    .map(|(l, p, t)| (*l, p.to_string(), t.to_string()))
    .collect();
    assert_eq!(got, want);
}
