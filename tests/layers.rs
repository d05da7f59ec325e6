//! The layering rule, checked: every `crate::` path in `src/` names a module in a lower layer
//! than the module it is written in, as the layer table in `src/lib.rs`'s documentation
//! draws them. Comments are not imports and are skipped.

use std::collections::BTreeMap;
use std::path::Path;

/// The layer of each top-level module, read from lib.rs's `| layer | modules | … |` table.
fn layers(lib_rs: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in lib_rs.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|c| c.parse::<u32>()) else {
            continue;
        };
        for module in cells.get(1).copied().unwrap_or("").split(',') {
            layers.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    layers
}

/// The top-level modules a source text names with `crate::`, outside `//` comments; a
/// `use crate::{…}` group may span lines.
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    {
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: every first segment in the group.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// Every `(module, imported, reason)` that breaks the rule.
fn violations(layers: &BTreeMap<String, u32>, files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (module, source) in files {
        let Some(&own) = layers.get(module) else {
            problems.push(format!("module `{module}` is not in lib.rs's layer table"));
            continue;
        };
        for name in crate_paths(source) {
            if &name == module {
                continue;
            }
            match layers.get(&name) {
                None => problems.push(format!(
                    "`{module}` names `crate::{name}`, which is not in lib.rs's layer table"
                )),
                Some(&theirs) if theirs >= own => problems.push(format!(
                    "`{module}` (layer {own}) imports from `{name}` (layer {theirs}): only lower layers may be imported"
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// `(top-level module, source)` for every file of the library.
fn sources(src: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, module: Option<&str>, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src is readable")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let owner = module.map_or(stem.clone(), str::to_owned);
            if path.is_dir() {
                walk(&path, Some(&owner), out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !(module.is_none() && (stem == "lib" || stem == "main"))
            {
                let text = std::fs::read_to_string(&path).expect("source is readable");
                out.push((owner, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(src, None, &mut out);
    out
}

#[test]
fn no_module_imports_from_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    assert!(
        layers.len() >= 14,
        "the layer table lists every module: {layers:?}"
    );
    let files = sources(&src);
    assert!(files.iter().any(|(m, _)| m == "server"), "server/ is read");
    let problems = violations(&layers, &files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_catches_an_upward_import_a_sideways_one_and_a_grouped_one() {
    let layers: BTreeMap<String, u32> =
        [("scenario", 0), ("engine", 2), ("expect", 2), ("server", 3)]
            .map(|(m, l)| (m.to_owned(), l))
            .into();
    let files = vec![
        ("engine".to_owned(), "use crate::server::Handle;".to_owned()),
        (
            "expect".to_owned(),
            "let x = crate::engine::Engine::new(s);".to_owned(),
        ),
        (
            "scenario".to_owned(),
            "use crate::{\n    scenario,\n    engine::Route,\n};".to_owned(),
        ),
        (
            "server".to_owned(),
            "use crate::engine; // crate::nothing in a comment".to_owned(),
        ),
    ];
    let problems = violations(&layers, &files);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("`engine` (layer 2) imports from `server` (layer 3)"));
    assert!(problems[1].contains("`expect` (layer 2) imports from `engine` (layer 2)"));
    assert!(problems[2].contains("`scenario` (layer 0) imports from `engine` (layer 2)"));
}
