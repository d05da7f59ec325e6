//! Reading a scenario with diagnostics a user can act on: JSON syntax errors with line and
//! column, type errors with the JSON path of the offending field, and as many errors at once
//! as can be found (each element of each list is checked on its own). Response bodies named
//! by `body_file` are read here, once, from the scenario's folder (see [`LoadOptions`]).

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::strict::Strict;
use super::{
    Action, CertificateSpec, ClientStep, Expectation, HostSpec, ListenerSpec, RuleSpec, Scenario,
};

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

/// How a scenario is loaded: where its `body_file`s are read from, and how far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Read `body_file`s that lie outside the scenario's folder (after following symlinks)
    /// too; by default they are refused.
    pub allow_files_outside_folder: bool,
    /// The folder `body_file`s are resolved against and must lie in. [`from_path_with`]
    /// defaults it to the scenario file's folder; without one (a scenario given as bytes),
    /// `body_file` is refused.
    pub base_dir: Option<PathBuf>,
}

/// The largest body file read (64 MiB): a test harness serves test bodies, and every byte
/// is held in memory for the whole run.
pub const MAX_BODY_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and validates a scenario file, with default [`LoadOptions`].
pub fn from_path(path: &Path) -> Result<(Scenario, Diagnostics), LoadError> {
    from_path_with(path, &LoadOptions::default())
}

/// Reads and validates a scenario file. `body_file`s are resolved against
/// `options.base_dir`, or else the file's own folder.
pub fn from_path_with(
    path: &Path,
    options: &LoadOptions,
) -> Result<(Scenario, Diagnostics), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let options = LoadOptions {
        allow_files_outside_folder: options.allow_files_outside_folder,
        base_dir: Some(options.base_dir.clone().unwrap_or(folder)),
    };
    let (mut scenario, diagnostics) = from_bytes_with(&bytes, &options)?;
    if scenario.name.is_none() {
        scenario.name = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned());
    }
    Ok((scenario, diagnostics))
}

/// Parses and validates scenario JSON from bytes, with default [`LoadOptions`] (so a
/// `body_file` is refused: there is no folder to read it from).
pub fn from_bytes(bytes: &[u8]) -> Result<(Scenario, Diagnostics), LoadError> {
    from_bytes_with(bytes, &LoadOptions::default())
}

/// Parses and validates scenario JSON from bytes.
pub fn from_bytes_with(
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<(Scenario, Diagnostics), LoadError> {
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
    from_value_with(&value, options)
}

/// Validates an already parsed JSON value as a scenario, with default [`LoadOptions`].
pub fn from_value(value: &Value) -> Result<(Scenario, Diagnostics), LoadError> {
    from_value_with(value, &LoadOptions::default())
}

/// Validates an already parsed JSON value as a scenario and reads its `body_file`s.
pub fn from_value_with(
    value: &Value,
    options: &LoadOptions,
) -> Result<(Scenario, Diagnostics), LoadError> {
    let mut scenario = match serde_path_to_error::deserialize::<_, Scenario>(Strict(value)) {
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
    let mut errors = outcome.errors;
    errors.extend(read_body_files(&mut scenario, options));
    if errors.is_empty() {
        Ok((
            scenario,
            Diagnostics {
                warnings: outcome.warnings,
            },
        ))
    } else {
        Err(LoadError::Invalid(errors))
    }
}

/// Reads every `body_file` (of host responses and of rules' respond actions) into its
/// `file_body`, once; a file named several times is read once and shared. A problem is an
/// issue at the `body_file`'s path. A response that also has a `body` is left to validation,
/// which reports the pair.
fn read_body_files(scenario: &mut Scenario, options: &LoadOptions) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut read_already = HashMap::new();
    let mut read = |path: String, body: &Option<String>, file: &Option<PathBuf>| {
        let file = file.as_deref().filter(|_| body.is_none())?;
        match read_body_file(file, options, &mut read_already) {
            Ok(bytes) => Some(bytes),
            Err(message) => {
                issues.push(Issue::new(path, message));
                None
            }
        }
    };
    for (h, host) in scenario.hosts.iter_mut().enumerate() {
        for (r, response) in host.responses.iter_mut().enumerate() {
            response.file_body = read(
                format!("hosts[{h}].responses[{r}].body_file"),
                &response.body,
                &response.body_file,
            );
        }
    }
    for (index, rule) in scenario.rules.iter_mut().enumerate() {
        if let Some(Action::Respond(respond)) = &mut rule.action {
            respond.file_body = read(
                format!("rules[{index}].action.respond.body_file"),
                &respond.body,
                &respond.body_file,
            );
        }
    }
    issues
}

/// The contents of one body file (from `read_already` if that file, after following links,
/// was read before), or what is wrong with it.
fn read_body_file(
    file: &Path,
    options: &LoadOptions,
    read_already: &mut HashMap<PathBuf, Bytes>,
) -> Result<Bytes, String> {
    let Some(base) = &options.base_dir else {
        return Err(format!(
            "body_file needs a scenario file: this scenario was given as bytes, with no folder to read {:?} from; load it from a file, or give the body inline with \"body\"",
            file.display().to_string()
        ));
    };
    let resolved = base.join(file);
    let shown = format!("{:?}", file.display().to_string());
    let canonical = std::fs::canonicalize(&resolved)
        .map_err(|e| format!("cannot read {shown} ({}): {e}", resolved.display()))?;
    if !options.allow_files_outside_folder {
        let folder = std::fs::canonicalize(base).map_err(|e| {
            format!(
                "cannot resolve the scenario's folder {} to check {shown}: {e}",
                base.display()
            )
        })?;
        if !canonical.starts_with(&folder) {
            return Err(format!(
                "{shown} resolves to {}, outside the scenario's folder {}: keep body files next to the scenario, or allow files outside its folder",
                canonical.display(),
                folder.display()
            ));
        }
    }
    if let Some(contents) = read_already.get(&canonical) {
        return Ok(contents.clone());
    }
    let metadata = std::fs::metadata(&canonical)
        .map_err(|e| format!("cannot read {shown} ({}): {e}", canonical.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "{shown} ({}) is not a regular file",
            canonical.display()
        ));
    }
    let too_large = || {
        format!(
            "{shown} is larger than {MAX_BODY_FILE_BYTES} bytes (64 MiB), the most a body file may hold"
        )
    };
    if metadata.len() > MAX_BODY_FILE_BYTES {
        return Err(too_large());
    }
    let mut contents = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(&canonical)
        // A file that grows while it is read is still cut off at the limit.
        .and_then(|f| f.take(MAX_BODY_FILE_BYTES + 1).read_to_end(&mut contents))
        .map_err(|e| format!("cannot read {shown} ({}): {e}", canonical.display()))?;
    if contents.len() as u64 > MAX_BODY_FILE_BYTES {
        return Err(too_large());
    }
    let contents = Bytes::from(contents);
    read_already.insert(canonical, contents.clone());
    Ok(contents)
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
    if let Err(err) = serde_path_to_error::deserialize::<_, Scenario>(Strict(&Value::Object(top))) {
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
    serde_path_to_error::deserialize::<_, T>(Strict(value))
        .err()
        .map(|err| issue_from(Some(path), err))
}
