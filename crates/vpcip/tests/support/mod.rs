//! A real `vpcip controller` process for the tests that drive it from
//! outside (the CLI's tests, the OpenStack clients' tests), with SQLite in
//! a directory of its own, removed with it.

#![allow(dead_code)] // each test binary uses its part

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The operator's token of the servers started here.
pub const OPERATOR: &str = "cli-test-operator";

pub struct Server {
    child: Child,
    pub url: String,
    pub dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn start() -> Server {
    start_with(&[])
}

/// A server with extra global arguments (e.g. `--log-format json`); its
/// log goes to `server.log` in its directory.
pub fn start_with(extra: &[&str]) -> Server {
    start_full(extra, None, &[])
}

/// A server with its web console on a loopback port it picks; the
/// console's URL, read from its log.
pub fn start_with_console() -> (Server, String) {
    let s = start_full(&[], None, &[("VPCIP_CONSOLE_LISTEN", "127.0.0.1:0")]);
    for _ in 0..100 {
        let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap_or_default();
        if let Some(url) = vpcip_lab::cloud::console_url_in(&log) {
            return (s, url);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the console did not start: {}",
        s.dir.join("server.log").display()
    );
}

/// A server reading `config` as its configuration file (`--config`).
pub fn start_configured(config: &str) -> Server {
    start_full(&[], Some(config), &[])
}

fn start_full(extra: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("vpcip-cli-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpcip"));
    cmd.args(extra)
        .args([
            "controller",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(format!("sqlite://{}/vpcip.db", dir.display()));
    if let Some(c) = config {
        let path = dir.join("vpcip.toml");
        std::fs::write(&path, c).unwrap();
        cmd.arg("--config").arg(path);
    }
    let child = cmd
        .envs(env.iter().copied())
        .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("vpcip controller did not start");
}

pub fn cli(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(args)
        .env("VPCIP_URL", &s.url)
        .env("VPCIP_TOKEN", token)
        .output()
        .unwrap()
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
