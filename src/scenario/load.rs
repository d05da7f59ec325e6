//! Reading a scenario with diagnostics a user can act on: JSON syntax errors with line and
//! column, type errors with the JSON path of the offending field, and as many errors at once
//! as can be found (each element of each list is checked on its own).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{CertificateSpec, ClientStep, Expectation, HostSpec, ListenerSpec, RuleSpec, Scenario};

/// One problem (or warning) at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// JSON path of the offending value, e.g. `hosts[1].certificate` (`.` for the root).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Issue {
    /// An issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// The JSON is not a valid scenario.
    #[error("{}", render_issues(.0))]
    Invalid(Vec<Issue>),
}

impl LoadError {
    /// Every problem as a `path: message` line (one line for I/O and syntax errors).
    pub fn lines(&self) -> Vec<String> {
        match self {
            LoadError::Invalid(issues) => issues.iter().map(Issue::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn render_issues(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Things that are legal but probably not what the author meant (a host whose certificate
/// does not cover its names is a valid way to stage a misdirection, so it is only a warning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// The warnings, in file order.
    pub warnings: Vec<Issue>,
}

/// Reads and validates a scenario file.
pub fn from_path(path: &Path) -> Result<(Scenario, Diagnostics), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let (mut scenario, diagnostics) = from_bytes(&bytes)?;
    if scenario.name.is_none() {
        scenario.name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
    }
    Ok((scenario, diagnostics))
}

/// Parses and validates scenario JSON from bytes.
pub fn from_bytes(bytes: &[u8]) -> Result<(Scenario, Diagnostics), LoadError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        // serde_json would only say "expected value"; say what is really wrong.
        let valid = &bytes[..e.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        return Err(LoadError::Syntax {
            line,
            column,
            message: "not UTF-8 text (scenario files are JSON, which is UTF-8)".to_owned(),
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    from_value(&value)
}

/// Validates an already parsed JSON value as a scenario.
pub fn from_value(value: &Value) -> Result<(Scenario, Diagnostics), LoadError> {
    let scenario = match serde_path_to_error::deserialize::<_, Scenario>(value) {
        Ok(scenario) => scenario,
        Err(first) => {
            let mut issues = structural_issues(value);
            if issues.is_empty() {
                issues.push(issue_from(None, first));
            }
            return Err(LoadError::Invalid(issues));
        }
    };
    let outcome = super::validate(&scenario);
    if outcome.errors.is_empty() {
        Ok((
            scenario,
            Diagnostics {
                warnings: outcome.warnings,
            },
        ))
    } else {
        Err(LoadError::Invalid(outcome.errors))
    }
}

/// serde_json appends " at line L column C" to its messages; the position is reported
/// separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn issue_from(prefix: Option<&str>, err: serde_path_to_error::Error<serde_json::Error>) -> Issue {
    let inner = err.path().to_string();
    let path = match (prefix, inner.as_str()) {
        (None, inner) => inner.to_owned(),
        (Some(prefix), ".") => prefix.to_owned(),
        (Some(prefix), inner) if inner.starts_with('[') => format!("{prefix}{inner}"),
        (Some(prefix), inner) => format!("{prefix}.{inner}"),
    };
    let message = strip_position(&err.into_inner().to_string())
        .replace("expected u64", "expected a whole number ≥ 0")
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace("expected f64", "expected a number");
    Issue::new(path, message)
}

/// Finds every structural (type-level) problem: top-level fields first, then each element of
/// each list on its own, so that one bad host does not hide a bad rule.
fn structural_issues(value: &Value) -> Vec<Issue> {
    let Some(object) = value.as_object() else {
        return vec![Issue::new(
            ".",
            "a scenario is a JSON object with at least `hosts`",
        )];
    };
    let mut issues = Vec::new();

    // Top level, with every list emptied so that only top-level problems show.
    let mut top = object.clone();
    for (key, field) in top.iter_mut() {
        if LISTS.iter().any(|(name, _)| name == key) && field.is_array() {
            *field = Value::Array(Vec::new());
        }
        if key == "client"
            && let Some(steps) = field.get_mut("steps").filter(|s| s.is_array())
        {
            *steps = Value::Array(Vec::new());
        }
    }
    if let Err(err) = serde_path_to_error::deserialize::<_, Scenario>(&Value::Object(top)) {
        issues.push(issue_from(None, err));
    }

    for (key, check) in LISTS {
        if let Some(Value::Array(items)) = object.get(*key) {
            for (index, item) in items.iter().enumerate() {
                if let Some(issue) = check(&format!("{key}[{index}]"), item) {
                    issues.push(issue);
                }
            }
        }
    }
    if let Some(Value::Array(steps)) = object.get("client").and_then(|c| c.get("steps")) {
        for (index, step) in steps.iter().enumerate() {
            if let Some(issue) = check_item::<ClientStep>(&format!("client.steps[{index}]"), step) {
                issues.push(issue);
            }
        }
    }
    issues
}

type ItemCheck = fn(&str, &Value) -> Option<Issue>;

/// The top-level lists and the type of their elements.
const LISTS: &[(&str, ItemCheck)] = &[
    ("certificates", check_item::<CertificateSpec>),
    ("listeners", check_item::<ListenerSpec>),
    ("hosts", check_item::<HostSpec>),
    ("rules", check_item::<RuleSpec>),
    ("expect", check_item::<Expectation>),
];

fn check_item<T: DeserializeOwned>(path: &str, value: &Value) -> Option<Issue> {
    serde_path_to_error::deserialize::<_, T>(value)
        .err()
        .map(|err| issue_from(Some(path), err))
}
