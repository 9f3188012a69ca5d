//! Runs each example of this crate offline and checks what it prints.
//!
//! One `cargo build --examples` (quick when they are up to date) gives the binaries' paths; each
//! test runs its binary with every provider's API key removed from the environment, so the
//! examples use their offline stand-in models and need no network.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The example binaries of this crate, by name, built once for all tests.
fn example_binaries() -> &'static HashMap<String, PathBuf> {
    static BINARIES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINARIES.get_or_init(|| {
        // Build them like this test was built: `target/release/deps/` means `--release`.
        let exe = std::env::current_exe().expect("the test knows its path");
        let release = exe
            .ancestors()
            .nth(2)
            .is_some_and(|d| d.ends_with("release"));
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--offline", "--package", "steadfast", "--examples"])
            .args(["--message-format", "json"])
            .args(release.then_some("--release"))
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Cargo gives this test the variables it gives a crate being built. Left in, they would
        // look like a changed environment to build scripts that watch them (ring's does), and
        // every run would rebuild half the dependency tree.
        for (var, _) in std::env::vars_os() {
            let var = var.to_string_lossy();
            if var.starts_with("CARGO_PKG_")
                || var.starts_with("CARGO_MANIFEST_")
                || var.starts_with("CARGO_BIN_")
                || var.starts_with("CARGO_CRATE_")
                || [
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&var.as_ref())
            {
                cmd.env_remove(var.as_ref());
            }
        }
        let out = cmd.output().expect("cargo can be started");
        assert!(
            out.status.success(),
            "building the examples failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut binaries = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let is_example = msg["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "example"));
            if msg["reason"] == "compiler-artifact"
                && is_example
                && let (Some(name), Some(exe)) =
                    (msg["target"]["name"].as_str(), msg["executable"].as_str())
            {
                binaries.insert(name.to_string(), PathBuf::from(exe));
            }
        }
        binaries
    })
}

/// Run example `name` offline and return its standard output; fail the test if it fails.
fn run_example(name: &str) -> String {
    let exe = example_binaries()
        .get(name)
        .unwrap_or_else(|| panic!("no example named `{name}` was built"));
    let mut cmd = Command::new(exe);
    for key in [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
    ] {
        cmd.env_remove(key);
    }
    let out = cmd.output().expect("the example can be started");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example `{name}` failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_contains(output: &str, expected: &[&str]) {
    for e in expected {
        assert!(
            output.contains(e),
            "expected {e:?} in the output:\n{output}"
        );
    }
}

#[test]
fn hello() {
    let out = run_example("hello");
    assert_contains(&out, &["Hello, Ada!", "(1 request, "]);
}

#[test]
fn tools() {
    let out = run_example("tools");
    assert_contains(
        &out,
        &[
            // The doc comments became descriptions.
            "forecast: Get tomorrow's weather forecast for a city.",
            "city: The city, for example \"Paris\".",
            // The deps, the plain tool, and the retry with better arguments.
            "forecast returned {\"celsius\":21.0,\"sky\":\"sunny\"}",
            "to_fahrenheit returned 69.8",
            "retry:  set_reminder: `7pm` is not a 24-hour HH:MM time",
            "calls set_reminder({\"note\":\"pack for the weather\",\"time\":\"19:00\"})",
            "Answer: Tomorrow in Lisbon: sunny, 21.0°C (69.8°F).",
            "Reminders stored in the deps: [\"19:00 pack for the weather\"]",
            "Usage: 3 requests, 4 tool calls,",
        ],
    );
}

#[test]
fn structured_output() {
    let out = run_example("structured_output");
    assert_contains(
        &out,
        &[
            "== Tool output mode",
            "calls final_result(",
            "retry:  final_result: famous_for must list exactly 3 things, not 4",
            "== Native output mode",
            "retry:  output: famous_for must list exactly 3 things, not 4",
        ],
    );
    let answer =
        "=> Lisbon (Portugal), 0.55 million people, famous for trams, pastéis de nata, fado\n";
    assert_eq!(
        out.matches(answer).count(),
        2,
        "both modes give the same value:\n{out}"
    );
}

#[test]
fn delegation() {
    let out = run_example("delegation");
    assert_contains(
        &out,
        &[
            "calls research({\"city\":\"Lisbon\"})",
            "Plan: A day in Lisbon: Lisbon is built on seven hills;",
            "researcher (run inside the tool): 1 request(s)",
            "planner's total:                  3 request(s)",
            "2 of its own request(s) + 1 of the researcher's",
        ],
    );
}

#[test]
fn durable() {
    let out = run_example("durable");
    let expected = "\
Run 1 of workflow `lisbon-tip`:
  ran       guide#1/model_request#1
  -- the power goes out while look_up runs --
Run 2, same id:
  replayed  guide#1/model_request#1
  ran       guide#1/tool__look_up#1
  ran       guide#1/model_request#2
Answer: Tip: Lisbon: take tram 28 up to the castle at sunset.
";
    assert!(out.starts_with(expected), "unexpected output:\n{out}");
    assert_contains(
        &out,
        &[
            "guide#1/model_request#1          agent__guide__model_request",
            "guide#1/tool__look_up#1          agent__guide__tool__look_up",
            "guide#1/model_request#2          agent__guide__model_request",
        ],
    );
}
