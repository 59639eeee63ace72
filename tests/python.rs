//! The Python package's tests (`pytest python/tests`), run as part of
//! `cargo test --workspace` with the environment `scripts/python-env`
//! makes: the test command is `scripts/python-env && cargo test
//! --workspace`. Without that environment this fails, naming the step.

mod common;

use std::process::Command;

#[test]
fn pytest_passes() {
    let py = common::python();
    let probe = Command::new(&py).args(["-c", "import normjit, torch, pytest"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{py} cannot import normjit, torch and pytest: run scripts/python-env first (the test command does)\n{}",
        probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string())
    );
    let out = Command::new(&py)
        .args(["-m", "pytest", "-q", "python/tests"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "pytest python/tests failed:\n{text}");
}
