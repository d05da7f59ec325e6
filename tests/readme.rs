//! The README's "### Expectations" table stays true to the scenario format: every expectation
//! kind the JSON Schema has (each one-key variant of `Expectation`, as `misdirect schema`
//! prints it) has a row, no row names a kind the schema lacks, each row names every parameter
//! of its kinds, and its level column gives the level the kind defaults to
//! (`Expectation::level`). And the README's client card is `clients/card.json`'s, as
//! `misdirect scorecard --from clients/card.json --format markdown` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use misdirect::scenario::{Expectation, Scenario};
use serde_json::{Map, Value, json};

const SECTION: &str = "### Expectations";

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of the README's Expectations subsection: from its heading to the next heading.
fn section(readme: &str) -> String {
    let mut lines = readme.lines().skip_while(|l| l.trim_end() != SECTION);
    assert!(
        lines.next().is_some(),
        "README.md has no \"{SECTION}\" heading"
    );
    lines
        .take_while(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cells of a Markdown table row; a `|` inside a code span or escaped as `\|` does not
/// split.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut in_code = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next();
                if next != Some('|') {
                    cells.last_mut().expect("a cell").push(c);
                }
                cells.last_mut().expect("a cell").extend(next);
            }
            '`' => {
                in_code = !in_code;
                cells.last_mut().expect("a cell").push(c);
            }
            '|' if !in_code => cells.push(String::new()),
            _ => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// One row of the table: the expectation cell, the level cell and the whole row's text.
struct Row {
    line: String,
    expectation: String,
    level: String,
}

impl Row {
    /// The kinds the row documents: the key each code span of its first cell opens with,
    /// as in `{"retried": {…}}`.
    fn kinds(&self) -> Vec<String> {
        self.expectation
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|span| span.strip_prefix("{\""))
            .filter_map(|rest| rest.split_once('"').map(|(kind, _)| kind.to_owned()))
            .collect()
    }
}

/// The rows of the section's table, checking its header.
fn table(section: &str) -> Vec<Row> {
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect();
    assert!(
        lines.len() > 2,
        "README.md's \"{SECTION}\" section has no table with rows"
    );
    let header = cells(lines[0]);
    assert_eq!(
        header,
        ["expectation", "level", "passes when"],
        "README.md's \"{SECTION}\" table's header (the test reads the columns by position)"
    );
    lines[2..]
        .iter()
        .map(|line| {
            let row = cells(line);
            assert_eq!(
                row.len(),
                header.len(),
                "README.md's \"{SECTION}\" table: a row has {} cells, not {}: {line}",
                row.len(),
                header.len()
            );
            Row {
                line: (*line).to_owned(),
                expectation: row[0].clone(),
                level: row[1].clone(),
            }
        })
        .collect()
}

fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Scenario)).expect("schema as JSON")
}

/// Follows a `$ref` (to `#/$defs/NAME`) if the node is one.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            let target = root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("schema: dangling $ref {reference}"));
            resolve(root, target)
        }
        None => node,
    }
}

/// The object forms a node allows: itself if it has properties, and those among its
/// `anyOf` / `oneOf` branches (a count range is a number or `{"min", "max"}`).
fn object_forms<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Map<String, Value>> {
    let node = resolve(root, node);
    let mut forms = Vec::new();
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        forms.push(properties);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            forms.extend(object_forms(root, branch));
        }
    }
    forms
}

/// A value the node accepts, with only what it requires: objects get their required
/// properties, nothing optional (so a `level` is left to its default).
fn sample(root: &Value, node: &Value) -> Value {
    let node = resolve(root, node);
    if let Some(value) = node.get("const") {
        return value.clone();
    }
    if let Some(first) = node
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = node
            .get(key)
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return sample(root, first);
        }
    }
    let ty = match node.get("type") {
        Some(Value::Array(types)) => types.iter().find(|t| *t != "null").unwrap_or(&types[0]),
        Some(ty) => ty,
        None => panic!("schema: no type to sample in {node}"),
    };
    match ty.as_str() {
        Some("integer") | Some("number") => json!(1),
        Some("string") => json!("b.test"),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => {
            let properties = node.get("properties").and_then(Value::as_object);
            let required = node.get("required").and_then(Value::as_array);
            let mut object = Map::new();
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let property = properties
                    .and_then(|p| p.get(name))
                    .unwrap_or_else(|| panic!("schema: required {name} has no schema"));
                object.insert(name.to_owned(), sample(root, property));
            }
            Value::Object(object)
        }
        other => panic!("schema: cannot sample type {other:?}"),
    }
}

/// One expectation kind as the schema has it.
struct Kind {
    /// Every parameter name any object form of it takes.
    parameters: BTreeSet<String>,
    /// The level it has when the scenario gives none.
    default_level: &'static str,
}

/// Every expectation kind of the schema, by name.
fn kinds(root: &Value) -> BTreeMap<String, Kind> {
    let variants = root
        .pointer("/$defs/Expectation/oneOf")
        .and_then(Value::as_array)
        .expect("schema: $defs.Expectation.oneOf lists the expectation kinds");
    let mut kinds = BTreeMap::new();
    for variant in variants {
        // A unit variant would be a bare string; a variant with parameters is an object of
        // exactly one key.
        let (name, parameters, value) = if let Some(name) =
            variant.get("const").and_then(Value::as_str)
        {
            (name.to_owned(), BTreeSet::new(), json!(name))
        } else {
            let properties = variant
                .get("properties")
                .and_then(Value::as_object)
                .filter(|p| p.len() == 1)
                .unwrap_or_else(|| panic!("schema: an Expectation variant that is neither a string nor a one-key object: {variant}"));
            let (name, node) = properties.iter().next().expect("one key");
            let parameters = object_forms(root, node)
                .into_iter()
                .flat_map(|form| form.keys().cloned())
                .collect();
            (
                name.clone(),
                parameters,
                json!({ name: sample(root, node) }),
            )
        };
        let expectation: Expectation = serde_json::from_value(value.clone()).unwrap_or_else(|e| {
            panic!("the sample {value} the schema allows does not load as an expectation: {e}")
        });
        let kind = Kind {
            parameters,
            default_level: expectation.level().as_str(),
        };
        assert!(
            kinds.insert(name.clone(), kind).is_none(),
            "schema: expectation kind {name} twice"
        );
    }
    kinds
}

#[test]
fn the_readme_expectations_table_lists_every_expectation_kind_of_the_schema() {
    let root = schema();
    let kinds = kinds(&root);
    let section = section(&readme());
    let rows = table(&section);
    let mut problems = Vec::new();
    let mut documented: BTreeMap<String, usize> = BTreeMap::new();

    for (number, row) in rows.iter().enumerate() {
        let row_kinds = row.kinds();
        if row_kinds.is_empty() {
            problems.push(format!(
                "row {} names no expectation kind (its first cell should hold `{{\"kind\": …}}`): {}",
                number + 1,
                row.line
            ));
        }
        for name in row_kinds {
            if let Some(earlier) = documented.insert(name.clone(), number + 1) {
                problems.push(format!(
                    "`{name}` has two rows, {earlier} and {}",
                    number + 1
                ));
            }
            let Some(kind) = kinds.get(&name) else {
                problems.push(format!(
                    "row {} names `{name}`, which the schema has no expectation kind of (known: {}): {}",
                    number + 1,
                    kinds.keys().cloned().collect::<Vec<_>>().join(", "),
                    row.line
                ));
                continue;
            };
            for parameter in &kind.parameters {
                if !row.expectation.contains(&format!("\"{parameter}\"")) {
                    problems.push(format!(
                        "row {} (`{name}`) does not name its parameter \"{parameter}\" in its first cell",
                        number + 1
                    ));
                }
            }
            if row.level != kind.default_level {
                problems.push(format!(
                    "row {} (`{name}`) gives level \"{}\", but `{name}` defaults to \"{}\" (Expectation::level)",
                    number + 1,
                    row.level,
                    kind.default_level
                ));
            }
        }
    }
    for (name, kind) in &kinds {
        if !documented.contains_key(name) {
            let parameters: Vec<String> =
                kind.parameters.iter().map(|p| format!("\"{p}\"")).collect();
            problems.push(format!(
                "the schema's expectation kind `{name}` (parameters: {}; level {}) has no row",
                if parameters.is_empty() {
                    "none".to_owned()
                } else {
                    parameters.join(", ")
                },
                kind.default_level
            ));
        }
    }
    // The levels themselves: every one the schema allows is named in the section.
    let levels = root
        .pointer("/$defs/Level/oneOf")
        .and_then(Value::as_array)
        .expect("schema: $defs.Level.oneOf lists the levels");
    for level in levels
        .iter()
        .filter_map(|l| l.get("const").and_then(Value::as_str))
    {
        if !section.contains(&format!("`{level}`")) {
            problems.push(format!(
                "the level `{level}` is not explained in the section"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "README.md's \"{SECTION}\" table is out of step with the scenario schema \
         (`misdirect schema`):\n  - {}",
        problems.join("\n  - ")
    );
}

/// The lines `scripts/scorecard-readme` writes the client card between.
const CARD_BEGIN: &str =
    "<!-- begin: misdirect scorecard --from clients/card.json --format markdown -->";
const CARD_END: &str = "<!-- end: misdirect scorecard -->";

#[test]
fn the_readme_client_card_is_the_card_the_repository_keeps() {
    let readme = readme();
    let inside: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != CARD_BEGIN)
        .skip(1)
        .take_while(|l| *l != CARD_END)
        .collect();
    assert!(
        readme.lines().any(|l| l == CARD_BEGIN) && readme.lines().any(|l| l == CARD_END),
        "README.md lacks the lines {CARD_BEGIN} and {CARD_END}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .args([
            "scorecard",
            "--from",
            "clients/card.json",
            "--format",
            "markdown",
        ])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("misdirect scorecard --from runs");
    // Exit 1 only says that some cell fails, which the card records.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "misdirect scorecard --from clients/card.json: {output:?}"
    );
    let card = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(card.contains("| **passes** |"), "{card}");
    assert_eq!(
        inside.join("\n").trim(),
        card.trim(),
        "README.md's client card is not clients/card.json's: run scripts/scorecard-readme --render-only"
    );
}

/// Every code block of the README's "From pytest" and "From testcontainers" sections is a
/// tested file's text (its first line says `from FILE`, and every other line is a line of
/// that file) or says it is untested.
#[test]
fn the_readme_test_your_client_snippets_are_tested_files_or_marked_untested() {
    let readme = readme();
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "### From pytest")
        .take_while(|l| !l.starts_with("### With `misdirect run`"))
        .collect();
    assert!(!section.is_empty(), "README.md has no \"### From pytest\"");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut blocks = 0;
    let mut lines = section.iter();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .copied()
            .collect();
        blocks += 1;
        let first = block.first().map(|l| l.trim()).unwrap_or_default();
        let words: Vec<&str> = first.split_whitespace().collect();
        match words.as_slice() {
            ["#" | "//", "untested", ..] => continue,
            ["#" | "//", "from", file] => {
                let text = fs::read_to_string(root.join(file))
                    .unwrap_or_else(|e| panic!("README.md names {file}: {e}"));
                let known: BTreeSet<&str> = text.lines().map(str::trim).collect();
                for l in &block[1..] {
                    assert!(
                        l.trim().is_empty() || known.contains(l.trim()),
                        "README.md's snippet from {file} has a line the file lacks: {l:?}"
                    );
                }
            }
            _ => panic!(
                "a README snippet in \"Test your client\" neither names its tested file (`# from FILE`) nor says `untested`: {first:?}"
            ),
        }
    }
    assert!(blocks >= 6, "{blocks} snippets");
}
