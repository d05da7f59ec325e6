//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// Whether an external tool is there to run. When it is not, a plain `cargo test` skips the
/// test with a message naming the package to install; `scripts/test` sets
/// `MISDIRECT_REQUIRE_TOOLS=1`, which turns the skip into a failure so that nothing it runs
/// is silently skipped.
pub fn have_tool(test: &str, program: &str, package: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var_os("MISDIRECT_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{test}: `{program}` is required (MISDIRECT_REQUIRE_TOOLS=1); install {package}");
    }
    eprintln!("SKIP {test}: `{program}` not found; install {package}");
    false
}
