//! Real guests: QEMU (TCG) booting the image `scripts/guest-image` builds
//! (Debian's cloud kernel, a busybox initramfs), plugged the way a
//! hypervisor plugs a NIC: QEMU makes the NIC's tap on the host under the
//! name the host agent waits for, with the NIC's MAC. The guest asks DHCP
//! for everything else and reports on its serial console (`VPCIP key=value`
//! lines), which the tests read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::World;

/// The guest image: kernel and initramfs.
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The image `scripts/guest-image` built (in the workspace's
/// `target/guest`, or `$VPCIP_GUEST_IMAGE`); an error that says how to
/// build it when it is missing.
pub fn guest_image() -> Result<GuestImage, String> {
    let dir = std::env::var_os("VPCIP_GUEST_IMAGE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest"),
        PathBuf::from,
    );
    let image = GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.gz"),
    };
    if image.kernel.is_file() && image.initrd.is_file() {
        Ok(image)
    } else {
        Err(format!(
            "no guest image in {}: run scripts/guest-image (scripts/test and .ci/run do)",
            dir.display()
        ))
    }
}

/// A booted guest.
pub struct Guest {
    /// The QEMU process, among the world's.
    pub process: usize,
    /// Its serial console, as a file.
    pub console: PathBuf,
}

/// What a guest boots with besides its NIC.
#[derive(Default)]
pub struct Boot<'a> {
    /// On the kernel command line (`vpcip.peer=IP`: the guest fetches
    /// that peer's page).
    pub append: &'a str,
    /// Files the guest finds at boot (path in the guest, contents): an
    /// archive appended to the initramfs (`/etc/keepalived/keepalived.conf`
    /// starts keepalived).
    pub files: &'a [(&'a str, String)],
}

/// The image's initramfs with `files` appended as a second archive (the
/// kernel unpacks each in turn), written under `dir`.
fn initrd_with(image: &GuestImage, name: &str, files: &[(&str, String)], dir: &Path) -> PathBuf {
    if files.is_empty() {
        return image.initrd.clone();
    }
    let tree = dir.join(format!("{name}.files"));
    for (path, contents) in files {
        let at = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap_or(&tree)).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&at, contents).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = dir.join(format!("{name}.initrd"));
    std::fs::copy(&image.initrd, &out).unwrap_or_else(|e| panic!("{e}"));
    let extra = Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet | gzip -1")
        .current_dir(&tree)
        .output()
        .unwrap_or_else(|e| panic!("cpio (.ci/run installs it): {e}"));
    assert!(extra.status.success(), "cannot archive {}", tree.display());
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .and_then(|mut f| f.write_all(&extra.stdout))
        .unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Boots guest `name` on `host`: its NIC's tap is `port` with `mac`. The
/// console and the QEMU log are written under `dir`.
#[allow(clippy::too_many_arguments)]
pub fn boot(
    w: &mut World,
    image: &GuestImage,
    host: &str,
    name: &str,
    port: &str,
    mac: &str,
    with: &Boot<'_>,
    dir: &Path,
) -> Guest {
    let console = dir.join(format!("{name}.console"));
    let initrd = initrd_with(image, name, with.files, dir);
    let append = with.append;
    let child = Command::new("ip")
        .args(["netns", "exec", &w.ns(host), "qemu-system-x86_64"])
        .args(["-m", "192", "-nodefaults", "-display", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &format!("console=ttyS0 panic=-1 quiet {append}")])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-netdev",
            &format!("tap,id=n0,ifname={port},script=no,downscript=no"),
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={mac},host_mtu=1450"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("{name}.qemu.log")))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start qemu-system-x86_64 (.ci/run installs qemu-system-x86): {e}")
        });
    Guest {
        process: w.adopt(child),
        console,
    }
}

impl Guest {
    /// Waits at most `limit` for the console's `VPCIP <key>…` line; its
    /// `key=value` fields.
    pub fn wait_for(
        &self,
        key: &str,
        limit: Duration,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let start = Instant::now();
        loop {
            if let Some(line) = std::fs::read(&self.console).ok().and_then(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .find(|l| l.strip_prefix("VPCIP ").is_some_and(|r| r.starts_with(key)))
                    .map(str::to_string)
            }) {
                return Some(fields(&line));
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The console so far.
    pub fn console_text(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// `VPCIP a=1 b=2 3` → {a: 1, b: "2 3"}.
fn fields(line: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut key: Option<String> = None;
    for word in line.split_whitespace().skip(1) {
        match word.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
                key = Some(k.to_string());
            }
            _ => {
                if let Some(v) = key.as_ref().and_then(|k| out.get_mut(k)) {
                    v.push(' ');
                    v.push_str(word);
                }
            }
        }
    }
    out
}
