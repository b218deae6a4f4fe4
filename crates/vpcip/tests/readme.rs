//! The README's tour of the CLI, run as written: every `sh` block of its
//! "A tour of the CLI" section (but those marked `<!-- tour: not run … -->`,
//! which run inside a guest or on a node) in one bash script, `set -e`,
//! in a network namespace of its own (so the tour's controller on
//! 127.0.0.1:9696 is its own) and a fresh directory, with `vpcip` on the
//! PATH. A command that fails, or a block that no longer matches the CLI,
//! fails the test. And `scripts/demo`, the README's first look at the
//! control plane, exits 0 and leaves nothing behind.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::process::Command;

/// The tour's shell lines, in order.
fn tour(readme: &str) -> Vec<String> {
    let start = readme
        .find("## A tour of the CLI")
        .expect("the README has no tour section");
    let end = start
        + readme[start..]
            .find("\n## API\n")
            .expect("no section after the tour");
    let mut out = Vec::new();
    let mut block: Option<bool> = None; // Some(run?) inside a block
    let mut last_text = "";
    for line in readme[start..end].lines() {
        match (&block, line.starts_with("```")) {
            (None, true) if line.starts_with("```sh") => {
                block = Some(!last_text.starts_with("<!-- tour: not run"));
            }
            (None, true) => block = Some(false),
            (Some(_), true) => {
                block = None;
                // A mark says only what the next block is.
                last_text = "";
                continue;
            }
            (Some(true), false) => out.push(line.to_string()),
            _ => {}
        }
        if block.is_none() && !line.trim().is_empty() && !line.starts_with("```") {
            last_text = line;
        }
    }
    out
}

/// What a command wrote, standard output then standard error.
fn said(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The namespace, removed however the test ends.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let lines = tour(&readme);
    assert!(
        lines.len() > 40 && lines.iter().any(|l| l.starts_with("vpcip controller")),
        "the tour extracted is too short: {lines:#?}"
    );
    let tag = vpcip_store::testing::unique("vrm");
    let ns = Ns(tag.clone());
    let ok = |c: &mut Command| c.status().unwrap().success();
    assert!(ok(Command::new("ip").args(["netns", "add", &ns.0])));
    assert!(ok(Command::new("ip").args([
        "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"
    ])));
    let dir = std::env::temp_dir().join(format!("{tag}-tour"));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_vpcip"))
        .parent()
        .unwrap()
        .to_path_buf();
    // The tour's background server ends with the script.
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nexport PATH={}:$PATH\nset -x\n{}\n",
        bin.display(),
        lines.join("\n")
    );
    std::fs::write(dir.join("tour.sh"), &script).unwrap();
    let out = Command::new("timeout")
        .args(["300", "ip", "netns", "exec", &ns.0, "bash", "tour.sh"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let log = said(&out);
    assert!(out.status.success(), "the README's tour failed:\n{log}");
    // What the tour says it shows, it shows.
    assert!(
        log.contains("192.168.202.0/24  192.168.201.20  gw1"),
        "{log}"
    );
    assert!(log.contains("vrrp_instance"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_tour_extraction_skips_what_runs_in_a_guest() {
    let readme = "## A tour of the CLI\n\ntext\n\n```sh\nvpcip a\n```\n\n<!-- tour: not run (inside a guest) -->\n```sh\nvpcip b\n```\n\n```\noutput\n```\n\n```toml\nx = 1\n```\n\n```sh\nvpcip c\n```\n\n## API\n";
    assert_eq!(tour(readme), ["vpcip a", "vpcip c"]);
}

#[test]
fn the_demo_script_runs_and_cleans_up() {
    let leftovers = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/tmp")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().starts_with("/tmp/vpcip-demo."))
            .collect()
    };
    let before = leftovers();
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/demo"))
        .env("VPCIP_BIN", env!("CARGO_BIN_EXE_vpcip"))
        .output()
        .unwrap();
    let text = said(&out);
    assert!(out.status.success(), "scripts/demo failed:\n{text}");
    // Its steps show (headers without colours off a terminal), ENIs included.
    assert!(
        text.contains("$ vpcip nic attach eni-2 --server vm-1"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colours off a terminal:\n{text}");
    assert_eq!(leftovers(), before, "scripts/demo left its directory");
}
