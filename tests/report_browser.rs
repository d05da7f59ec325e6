//! The HTML report of a real run, rendered by headless Chromium (inside a loopback-only
//! network namespace): the lanes, the request boxes and the retry arrow are on the page.

mod common;

use std::process::{Command, Stdio};

use common::{chromium_flags, have_tool, in_loopback_namespace, python_with_h2};

#[test]
fn the_html_report_of_a_real_run_shows_lanes_in_chromium() {
    if !have_tool(
        "report_in_chromium",
        "chromium",
        "the Debian package `chromium`",
    ) {
        return;
    }
    let Some(python) = python_with_h2("report_in_chromium") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let root = env!("CARGO_MANIFEST_DIR");
    let html = dir.path().join("run.html");
    let status = Command::new(env!("CARGO_BIN_EXE_misdirect"))
        .args([
            "run",
            &format!("{root}/scenarios/coalescing-wrong-server.json"),
            "--log",
            "warn",
            "--certs-dir",
        ])
        .arg(dir.path().join("certs"))
        .arg("--html")
        .arg(&html)
        .arg("--")
        .arg(&python)
        .arg(format!("{root}/clients/python_h2.py"))
        .stdout(Stdio::null())
        .status()
        .expect("misdirect run");
    assert!(status.success(), "the correct client must pass");

    let profile = dir.path().join("profile");
    let screenshot = dir.path().join("report.png");
    let url = format!("file://{}", html.display());
    let mut flags = chromium_flags(&profile);
    flags.push("--window-size=1300,700".into());
    flags.push(format!("--screenshot={}", screenshot.display()));
    flags.push(url.clone());
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(mut shot) = in_loopback_namespace("report_in_chromium", "chromium", &args) else {
        return;
    };
    let output = shot.output().expect("chromium runs");
    assert!(
        screenshot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&screenshot).expect("png");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a blank page is smaller"
    );

    // What Chromium built from the page: the SVG's lanes, boxes and arrow are in the DOM.
    let mut flags = chromium_flags(&dir.path().join("profile2"));
    flags.push("--dump-dom".into());
    flags.push(url);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(mut dump) = in_loopback_namespace("report_in_chromium", "chromium", &args) else {
        return;
    };
    let output = dump.output().expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert_eq!(dom.matches("class=\"lane\"").count(), 2, "{dom}");
    assert_eq!(dom.matches("class=\"request\"").count(), 4);
    assert_eq!(dom.matches("class=\"retry\"").count(), 1);
    assert!(dom.contains("Verdict: <span class=\"pass\">PASS</span>"));
}
