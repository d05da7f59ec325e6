//! The scenario library: the bundled scenarios (compiled into the binary, so that `misdirect
//! scenarios` and `misdirect scorecard` work wherever the binary is), and catalogues of
//! scenario files and folders given on the command line.

use std::path::{Path, PathBuf};

use crate::scenario::{self, Cause, Level, LoadOptions, Scenario};

/// The bundled scenarios, as (file stem, JSON), in file-name order; `scenarios/` in the
/// source tree (a test keeps the two the same).
pub const BUNDLED: &[(&str, &str)] = &[
    ("always-421", include_str!("../scenarios/always-421.json")),
    (
        "browser-coalescing",
        include_str!("../scenarios/browser-coalescing.json"),
    ),
    (
        "cdn-misrouting",
        include_str!("../scenarios/cdn-misrouting.json"),
    ),
    (
        "certificate-invalid",
        include_str!("../scenarios/certificate-invalid.json"),
    ),
    (
        "certificate-not-covering",
        include_str!("../scenarios/certificate-not-covering.json"),
    ),
    (
        "coalescing-wrong-server",
        include_str!("../scenarios/coalescing-wrong-server.json"),
    ),
    (
        "first-attempt-421",
        include_str!("../scenarios/first-attempt-421.json"),
    ),
    (
        "goaway-retry",
        include_str!("../scenarios/goaway-retry.json"),
    ),
    (
        "origin-lists-b",
        include_str!("../scenarios/origin-lists-b.json"),
    ),
    (
        "origin-omits-b",
        include_str!("../scenarios/origin-omits-b.json"),
    ),
    (
        "refused-stream",
        include_str!("../scenarios/refused-stream.json"),
    ),
    (
        "retry-post-body",
        include_str!("../scenarios/retry-post-body.json"),
    ),
    (
        "same-cert-different-ip",
        include_str!("../scenarios/same-cert-different-ip.json"),
    ),
    (
        "vhost-misconfigured",
        include_str!("../scenarios/vhost-misconfigured.json"),
    ),
];

/// One scenario of a catalogue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The scenario's stable id (its `id`, else its `name`, else the file stem).
    pub id: String,
    /// Where it came from: a file, or `bundled:STEM`.
    pub source: String,
    /// The file, when it is one (bundled scenarios have none).
    pub path: Option<PathBuf>,
    /// Its JSON text.
    pub text: String,
    /// The scenario.
    pub scenario: Scenario,
}

impl Entry {
    /// The cause it stages, as a card shows it.
    pub fn cause_label(&self) -> &'static str {
        self.scenario.cause.map_or("-", Cause::label)
    }

    /// The levels of its expectations, in order.
    pub fn levels(&self) -> Vec<Level> {
        self.scenario.expect.iter().map(|e| e.level()).collect()
    }
}

/// A catalogue that cannot be made: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct CatalogError {
    /// The file (or `bundled:STEM`).
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// The scenarios of `paths` (files, and the `*.json` files of folders, in name order); the
/// bundled library when `paths` is empty. Ids must be unique.
pub fn catalog(paths: &[PathBuf], load: &LoadOptions) -> Result<Vec<Entry>, CatalogError> {
    let mut entries = Vec::new();
    if paths.is_empty() {
        for (stem, text) in BUNDLED {
            let source = format!("bundled:{stem}");
            let scenario = scenario::from_bytes_with(text.as_bytes(), load)
                .map(|(s, _)| s)
                .map_err(|e| CatalogError {
                    origin: source.clone(),
                    message: e.lines().join("; "),
                })?;
            entries.push(entry(stem, source, None, (*text).to_owned(), scenario));
        }
    } else {
        for path in paths {
            for file in files_of(path)? {
                let source = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|e| CatalogError {
                    origin: source.clone(),
                    message: e.to_string(),
                })?;
                let scenario = scenario::from_path_with(&file, load)
                    .map(|(s, _)| s)
                    .map_err(|e| CatalogError {
                        origin: source.clone(),
                        message: e.lines().join("; "),
                    })?;
                let stem = file
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned());
                entries.push(entry(&stem, source, Some(file), text, scenario));
            }
        }
    }
    let mut seen = std::collections::BTreeMap::new();
    for entry in &entries {
        if let Some(other) = seen.insert(entry.id.clone(), entry.source.clone()) {
            return Err(CatalogError {
                origin: entry.source.clone(),
                message: format!("id {:?} is also the id of {other}", entry.id),
            });
        }
    }
    Ok(entries)
}

fn entry(
    stem: &str,
    source: String,
    path: Option<PathBuf>,
    text: String,
    scenario: Scenario,
) -> Entry {
    let id = scenario
        .id
        .clone()
        .or_else(|| scenario.name.clone())
        .unwrap_or_else(|| stem.to_owned());
    Entry {
        id,
        source,
        path,
        text,
        scenario,
    }
}

/// A file, or the `*.json` files of a folder in name order.
fn files_of(path: &Path) -> Result<Vec<PathBuf>, CatalogError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let read = std::fs::read_dir(path).map_err(|e| CatalogError {
        origin: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_library_is_the_scenarios_folder_and_every_one_is_described() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let on_disk: Vec<String> = files_of(&dir)
            .expect("scenarios/")
            .iter()
            .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
            .collect();
        let bundled: Vec<&str> = BUNDLED.iter().map(|(stem, _)| *stem).collect();
        assert_eq!(bundled, on_disk, "list every file of scenarios/ in BUNDLED");
        for (stem, text) in BUNDLED {
            let on_disk = std::fs::read_to_string(dir.join(format!("{stem}.json"))).expect("read");
            assert_eq!(*text, on_disk, "{stem}");
        }
        let entries = catalog(&[], &LoadOptions::default()).expect("the library loads");
        for entry in &entries {
            let s = &entry.scenario;
            assert_eq!(
                s.id.as_deref(),
                Some(entry.id.as_str()),
                "{}: an id",
                entry.source
            );
            assert!(s.cause.is_some(), "{}: a cause", entry.source);
            assert!(
                !s.rfc.is_empty(),
                "{}: the RFC sections it checks",
                entry.source
            );
            assert!(s.description.is_some(), "{}: a description", entry.source);
        }
        // The folder given by path is the same catalogue.
        let by_path = catalog(&[dir], &LoadOptions::default()).expect("loads");
        let ids = |e: &[Entry]| e.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&entries), ids(&by_path));
    }

    #[test]
    fn two_scenarios_with_one_id_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = BUNDLED[0].1;
        std::fs::write(dir.path().join("a.json"), text).expect("write");
        std::fs::write(dir.path().join("b.json"), text).expect("write");
        let err = catalog(&[dir.path().to_path_buf()], &LoadOptions::default())
            .expect_err("duplicate ids");
        assert!(err.message.contains("is also the id of"), "{err}");
    }
}
