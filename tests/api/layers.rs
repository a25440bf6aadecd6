//! The top-level modules of `src/` depend on one another in one order, with no cycle: a room
//! names another (`crate::room`, in code or in a doc link) only if that room comes before it, so
//! a reader can learn them one at a time and a change to one cannot break those below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module (a directory, or a file other than lib.rs and main.rs) and the files
/// it is made of.
fn rooms(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut rooms = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("src/ is readable") {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = Vec::new();
            collect_rust_files(&path, &mut files);
            rooms.insert(name, files);
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            rooms.insert(name, vec![path]);
        }
    }
    rooms
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The modules a file names after `crate::`, alone or in a `crate::{a, b::c}` group. A file's
/// unit tests (from its first `#[cfg(test)]` on) do not count.
fn named(text: &str) -> BTreeSet<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            names.extend(top_level_items(group).map(leading_name));
        } else {
            names.insert(leading_name(rest));
        }
    }
    names
}

/// The items of a `{...}` group up to its closing brace (`group` starts after the opening one),
/// each with its own nested group: `db::{Conn, Tx}, audit}` gives `db::{Conn, Tx}` and `audit`.
fn top_level_items(group: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.into_iter().map(str::trim)
}

fn leading_name(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The modules in an order where each depends only on those before it, or the ones that cannot
/// be ordered: those on a cycle (and any between two cycles).
fn order(edges: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, BTreeSet<String>> {
    let mut placed: Vec<String> = Vec::new();
    let mut left: BTreeSet<String> = edges.keys().cloned().collect();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|room| edges[*room].iter().all(|needed| placed.contains(needed)))
            .cloned()
            .collect();
        if ready.is_empty() {
            return Err(without_dependents(edges, left));
        }
        for room in ready {
            left.remove(&room);
            placed.push(room);
        }
    }
    Ok(placed)
}

/// Takes away, one by one, the modules nothing left depends on: what only depends on a cycle is
/// not part of it.
fn without_dependents(
    edges: &BTreeMap<String, BTreeSet<String>>,
    mut left: BTreeSet<String>,
) -> BTreeSet<String> {
    loop {
        let needed: BTreeSet<&String> = left.iter().flat_map(|room| &edges[room]).collect();
        let unneeded: Vec<String> = left
            .iter()
            .filter(|room| !needed.contains(room))
            .cloned()
            .collect();
        if unneeded.is_empty() {
            return left;
        }
        for room in unneeded {
            left.remove(&room);
        }
    }
}

fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let rooms = rooms(src);
    rooms
        .iter()
        .map(|(room, files)| {
            let needs = files
                .iter()
                .flat_map(|file| named(&std::fs::read_to_string(file).unwrap()))
                .filter(|name| name != room && rooms.contains_key(name))
                .collect();
            (room.clone(), needs)
        })
        .collect()
}

#[test]
fn the_top_level_modules_depend_on_one_another_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = dependencies(&src);
    assert!(edges.len() > 10, "found only {:?} in src/", edges.keys());
    if let Err(knot) = order(&edges) {
        let inside: Vec<String> = knot
            .iter()
            .flat_map(|room| {
                edges[room]
                    .iter()
                    .filter(|needed| knot.contains(*needed))
                    .map(move |needed| format!("{room} -> {needed}"))
            })
            .collect();
        panic!(
            "these modules of src/ cannot be ordered (a cycle runs through some of them): {}",
            inside.join(", ")
        );
    }
}

/// The rooms in the order `src/lib.rs` lists them in its module documentation.
fn documented_order(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs is readable");
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - "))
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_module_names_only_those_lib_rs_lists_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = dependencies(&src);
    let listed: Vec<String> = documented_order(&src)
        .into_iter()
        .filter(|name| edges.contains_key(name))
        .collect();
    let unlisted: Vec<&String> = edges.keys().filter(|room| !listed.contains(room)).collect();
    assert!(unlisted.is_empty(), "src/lib.rs does not list {unlisted:?}");
    for (position, room) in listed.iter().enumerate() {
        let later: Vec<&String> = edges[room]
            .iter()
            .filter(|needed| !listed[..position].contains(needed))
            .collect();
        assert!(
            later.is_empty(),
            "{room} names {later:?}, which src/lib.rs lists after it"
        );
    }
}

#[test]
fn a_cycle_is_found_and_a_chain_is_ordered() {
    let graph = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(room, needs)| {
                let needs = needs.iter().map(|n| n.to_string()).collect();
                (room.to_string(), needs)
            })
            .collect()
    };
    let chain = graph(&[("db", &[]), ("audit", &["db"]), ("api", &["audit", "db"])]);
    assert_eq!(order(&chain).unwrap(), ["db", "audit", "api"]);
    let knot = graph(&[
        ("db", &[]),
        ("a", &["b", "db"]),
        ("b", &["a"]),
        ("c", &["a"]),
    ]);
    assert_eq!(
        order(&knot).unwrap_err(),
        ["a", "b"].map(String::from).into()
    );
    assert_eq!(
        named(
            "use crate::{db::{Conn, Tx}, audit};\n/// [`crate::time::now`]\nfn f() { crate::saml::x(); }\n#[cfg(test)]\nuse crate::cli;"
        ),
        ["audit", "db", "saml", "time"].map(String::from).into()
    );
}
