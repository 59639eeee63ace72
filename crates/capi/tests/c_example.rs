//! The C example, built and run for real: builds `libnormjit_capi.a` (with
//! the same target directory and profile as this test binary), compiles
//! `examples/c/layer_norm_adamw.c` with the system C compiler (`cc`, or
//! `$CC`) against `include/normjit.h`, runs it on the repository's `ir/`,
//! and checks every output it prints against the reference interpreter.
//!
//! Tolerance: per tensor, max |C - reference| <= 1e-5 * max(1, max |reference|),
//! the reference being `normjit_interp::run::<f32>` on the inputs and
//! params the program printed (`%.9g` round-trips f32 exactly). Runs by
//! position and by name on the same inputs must agree bit for bit.
//!
//! A missing C compiler fails the test (it does not skip): CI has one.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Relative tolerance of the comparison with the reference interpreter.
const TOLERANCE: f32 = 1e-5;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

/// The target directory and profile directory this test binary was built
/// into (`<target>/<profile>/deps/<this test>`).
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test binary lives in <target>/<profile>/deps");
    let target = profile_dir.parent().expect("<target>/<profile>").to_path_buf();
    let profile = profile_dir.file_name().and_then(|s| s.to_str()).expect("a UTF-8 profile directory").to_string();
    (target, profile)
}

/// Runs `cmd` to completion within `limit`, returning (success, stdout,
/// stderr); kills it and fails the test past the limit.
fn run_with_timeout(mut cmd: Command, what: &str, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {} s (is another cargo holding the build directory lock?)\nstderr:\n{}",
                limit.as_secs(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), out.join().unwrap_or_default(), err.join().unwrap_or_default())
}

/// Builds the static library with cargo and returns its path.
fn build_static_lib() -> PathBuf {
    let (target, profile) = target_and_profile();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace()).env("CARGO_TARGET_DIR", &target).args(["build", "-p", "normjit-capi", "--lib"]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    // `cargo test` holds no build lock while tests run, so this does not
    // deadlock; it is a no-op or a relink when the library is fresh.
    let (ok, _, stderr) = run_with_timeout(cmd, "cargo build -p normjit-capi", Duration::from_secs(1800));
    assert!(ok, "cargo build -p normjit-capi failed:\n{stderr}");
    let lib = target.join(&profile).join("libnormjit_capi.a");
    assert!(lib.is_file(), "cargo build did not produce {}", lib.display());
    lib
}

/// The C compiler: `$CC` (which may carry arguments) or `cc`. Fails the
/// test with a clear message when there is none.
fn c_compiler() -> Vec<String> {
    let cc = std::env::var("CC").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "cc".to_string());
    let words: Vec<String> = cc.split_whitespace().map(str::to_string).collect();
    let probe = Command::new(&words[0]).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if let Err(e) = probe {
        panic!(
            "no C compiler: cannot run `{}` ({e}). This test compiles examples/c/layer_norm_adamw.c and \
             needs a C compiler: install one (e.g. gcc) or point CC at it.",
            words[0]
        );
    }
    words
}

/// Compiles the example against the header and the static library.
fn compile_example(cc: &[String], lib: &Path) -> PathBuf {
    let (target, profile) = target_and_profile();
    let dir = target.join(&profile).join("capi-c-example");
    std::fs::create_dir_all(&dir).expect("create the example's build directory");
    let exe = dir.join("layer_norm_adamw");
    let root = workspace();
    let mut cmd = Command::new(&cc[0]);
    cmd.args(&cc[1..])
        .args(["-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c/layer_norm_adamw.c"))
        .arg(lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe);
    let (ok, _, stderr) = run_with_timeout(cmd, "the C compiler", Duration::from_secs(600));
    assert!(ok, "compiling examples/c/layer_norm_adamw.c with `{}` failed:\n{stderr}", cc.join(" "));
    exe
}

/// One run the program printed.
#[derive(Default, Debug)]
struct Run {
    dims: Vec<(String, usize)>,
    params: Vec<(String, f64)>,
    inputs: BTreeMap<String, Vec<f32>>,
    outputs: BTreeMap<String, Vec<f32>>,
}

/// Parses the program's output (format: see the example's header comment).
fn parse(stdout: &str) -> BTreeMap<String, Run> {
    fn bad(no: usize, line: &str) -> ! {
        panic!("line {}: cannot parse {line:?}", no + 1)
    }
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let mut lines = stdout.lines().enumerate();
    while let Some((no, line)) = lines.next() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 2 {
            bad(no, line);
        }
        let (kind, run) = (words[0], words[1]);
        let r = runs.entry(run.to_string()).or_default();
        match kind {
            "dims" => {
                for w in &words[2..] {
                    let (name, size) = w.split_once('=').unwrap_or_else(|| bad(no, line));
                    r.dims.push((name.to_string(), size.parse().unwrap_or_else(|_| bad(no, line))));
                }
            }
            "param" if words.len() == 4 => {
                r.params.push((words[2].to_string(), words[3].parse().unwrap_or_else(|_| bad(no, line))));
            }
            "in" | "out" if words.len() == 4 => {
                let count: usize = words[3].parse().unwrap_or_else(|_| bad(no, line));
                let values: Vec<f32> = (0..count)
                    .map(|_| {
                        let (no, v) = lines.next().unwrap_or_else(|| panic!("{run}: {} ends early", words[2]));
                        v.trim().parse().unwrap_or_else(|_| bad(no, v))
                    })
                    .collect();
                let map = if kind == "in" { &mut r.inputs } else { &mut r.outputs };
                map.insert(words[2].to_string(), values);
            }
            _ => bad(no, line),
        }
    }
    runs
}

/// Checks one run against `normjit_interp::run::<f32>`.
fn check_run(name: &str, run: &Run) {
    let file = match name.split('.').next() {
        Some("layer_norm") => "ir/norm/layer_norm.nj",
        Some("adamw") => "ir/optim/adamw.nj",
        _ => panic!("unexpected run {name}"),
    };
    let text = std::fs::read_to_string(workspace().join(file)).expect("read the kernel");
    let k = normjit_ir::parse(&text).unwrap_or_else(|d| panic!("{file} does not parse: {d}"));
    let dims: Vec<usize> = k
        .dims
        .iter()
        .map(|(_, d)| {
            run.dims
                .iter()
                .find(|(n, _)| *n == d.name)
                .unwrap_or_else(|| panic!("{name}: dim {} not printed", d.name))
                .1
        })
        .collect();
    let params: Vec<f64> = k
        .params
        .iter()
        .map(|(_, p)| {
            run.params
                .iter()
                .find(|(n, _)| *n == p.name)
                .unwrap_or_else(|| panic!("{name}: param {} not printed", p.name))
                .1
        })
        .collect();
    let empty: Vec<f32> = Vec::new();
    let inputs: Vec<&[f32]> = k
        .tensors
        .iter()
        .map(|(_, t)| match t.role {
            normjit_ir::Role::Out => &empty[..],
            _ => run.inputs.get(&t.name).unwrap_or_else(|| panic!("{name}: input {} not printed", t.name)),
        })
        .collect();
    let reference = normjit_interp::run::<f32>(&k, &dims, &params, &inputs).expect("the interpreter runs");
    let mut checked = 0;
    for (id, t) in k.tensors.iter() {
        let Some(want) = reference.get(id) else { continue };
        let got = run.outputs.get(&t.name).unwrap_or_else(|| panic!("{name}: output {} not printed", t.name));
        assert_eq!(got.len(), want.len(), "{name}: {} has {} values, expected {}", t.name, got.len(), want.len());
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let (worst, at) = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .enumerate()
            .fold((0.0f32, 0), |(m, i), (j, e)| if e > m || e.is_nan() { (e, j) } else { (m, i) });
        assert!(
            worst <= TOLERANCE * scale,
            "{name}: {} differs from the reference interpreter by {worst} at {at} (C {}, reference {}; \
             tolerance {TOLERANCE} * {scale})",
            t.name,
            got[at],
            want[at]
        );
        checked += 1;
    }
    assert!(checked > 0, "{name}: no output checked");
}

#[test]
fn c_example_matches_the_reference_interpreter() {
    let cc = c_compiler();
    let lib = build_static_lib();
    let exe = compile_example(&cc, &lib);
    let mut cmd = Command::new(&exe);
    cmd.arg(workspace().join("ir"));
    let (ok, stdout, stderr) = run_with_timeout(cmd, "the C example", Duration::from_secs(300));
    assert!(ok, "the C example failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let runs = parse(&stdout);
    let names: Vec<&str> = runs.keys().map(|s| s.as_str()).collect();
    assert_eq!(names, ["adamw.named", "adamw.position", "layer_norm.named", "layer_norm.position"]);
    for (name, run) in &runs {
        check_run(name, run);
    }
    for kernel in ["layer_norm", "adamw"] {
        let (pos, named) = (&runs[&format!("{kernel}.position")], &runs[&format!("{kernel}.named")]);
        assert_eq!(pos.inputs, named.inputs, "{kernel}: both runs start from the same inputs");
        assert_eq!(pos.params, named.params, "{kernel}: both runs use the same params");
        for (t, v) in &pos.outputs {
            let w = &named.outputs[t];
            let same = v.len() == w.len() && v.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{kernel}: `{t}` differs between the positional and the named run: {v:?} vs {w:?}");
        }
    }
    // The program's deliberate mistake was refused with a message naming it.
    assert!(
        stdout.contains("is refused: NJ_ERR_SHAPE: dim `D` is 5 from the shape of `x` but 4 from the shape of `gamma`"),
        "the refused call's message is missing:\n{stdout}"
    );
}
