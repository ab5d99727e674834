//! Debian's Chromium driven by playwright-core (tests/browser/journey.mjs).
//! Prints SKIPPED when Chromium or Node is missing, unless
//! ASPEN_REQUIRE_BROWSER=1 (CI).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// `npm ci` in `dir` unless `module` is installed there. Tests run in
/// parallel, as threads (`cargo test`) or as processes (nextest): one of
/// them installs, under a file lock, while the others wait, so none starts
/// Node on a half-written node_modules (`npm ci` empties it first; on a
/// fresh checkout under nextest, one test's provider once started from a
/// half-installed package and never answered).
pub fn npm_installed(dir: &std::path::Path, module: &str) -> Result<(), String> {
    let lock = std::fs::File::create(dir.join("node_modules.lock"))
        .map_err(|e| format!("cannot create the npm lock in {}: {e}", dir.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock the npm lock in {}: {e}", dir.display()))?;
    if dir.join("node_modules").join(module).exists() {
        return Ok(());
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(format!("npm ci in {} failed", dir.display()))
    }
}

/// Whether the browser tests can run here; installs the npm package on
/// first use.
pub fn ready() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let problem = if !std::path::Path::new(&chromium).exists() {
        Some(format!(
            "Chromium not found at {chromium} (apt-get install -y chromium)"
        ))
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node is not installed".to_string())
    } else {
        npm_installed(&browser_dir(), "playwright-core").err()
    };
    match problem {
        None => true,
        Some(p) => {
            if std::env::var("ASPEN_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("browser tests required: {p}");
            }
            eprintln!("SKIPPED: {p}");
            false
        }
    }
}

/// Runs the browser script without blocking the runtime the in-process
/// server lives on.
pub async fn drive(cfg: Value) -> Value {
    run("journey.mjs", cfg).await
}

/// Runs one script of tests/browser with `cfg`; what it saw.
pub async fn run(script: &str, cfg: Value) -> Value {
    let out = tokio::process::Command::new("node")
        .arg(browser_dir().join(script))
        .arg(cfg.to_string())
        .current_dir(browser_dir())
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{script} printed {stdout:?}; stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(v.get("error").is_none(), "browser: {v}");
    v
}
