//! The fast path's BPF object embedded in vpcip is the one its source
//! makes: `bpf/build` (Debian 12's clang 14 and llvm-strip) run on a copy
//! of `bpf/` gives the committed bytes. Needs clang, llvm and libbpf-dev
//! (scripts/test installs them).

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::path::Path;
use std::process::Command;

#[test]
fn the_committed_bpf_object_is_built_from_its_source() {
    let bpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let copy = std::env::temp_dir().join(format!("vpcip-bpf-{}", std::process::id()));
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["build", "fastpath.bpf.c"] {
        std::fs::copy(bpf.join(f), copy.join(f)).unwrap();
    }
    let out = Command::new(copy.join("build"))
        .output()
        .expect("run bpf/build (clang, llvm-strip: apt-get install clang llvm libbpf-dev)");
    let built = std::fs::read(copy.join("fastpath.bpf.o"));
    let _ = std::fs::remove_dir_all(&copy);
    assert!(
        out.status.success(),
        "bpf/build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        built.unwrap() == vpcip_sys::fastpath::OBJECT,
        "crates/vpcip-sys/bpf/fastpath.bpf.o is not what its source builds: run crates/vpcip-sys/bpf/build and commit the object"
    );
}
