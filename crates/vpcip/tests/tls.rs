//! The API over TLS: a `vpcip controller` with an operator-supplied certificate
//! (made here with openssl: a CA and a server certificate for 127.0.0.1),
//! the CLI trusting that CA through VPCIP_CA_CERT, and a host agent whose
//! registration and desired-state stream go over TLS, with an agent's token
//! of its own. Without the CA, and
//! over plain HTTP, nothing gets through.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const OPERATOR: &str = "tls-test-operator";

struct Procs(Vec<Child>, Option<String>, std::path::PathBuf);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(ns) = &self.1 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cli(url: &str, ca: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpcip"));
    c.args(args)
        .env("VPCIP_URL", url)
        .env("VPCIP_TOKEN", OPERATOR)
        .env_remove("VPCIP_CA_CERT");
    if let Some(ca) = ca {
        c.env("VPCIP_CA_CERT", ca);
    }
    c.output().unwrap()
}

#[test]
fn the_api_and_the_agents_stream_run_over_tls() {
    let dir = std::env::temp_dir().join(format!("vpcip-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut procs = Procs(vec![], None, dir.clone());
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend(ec);
    ca_args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vpcip test CA",
    ]);
    openssl(&dir, &ca_args);
    let mut csr_args = vec!["req"];
    csr_args.extend(ec);
    csr_args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&dir, &csr_args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args([
            "controller",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
        ])
        .arg(format!("sqlite://{}/vpcip.db", dir.display()))
        .arg("--tls-cert")
        .arg(dir.join("server.pem"))
        .arg("--tls-key")
        .arg(dir.join("server.key"))
        .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    procs.0.push(server);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let https = format!("https://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    // With the operator's CA: works.
    let out = cli(&https, Some(&ca), &["zone", "create", "z1"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
    // Without it, or in plain HTTP: nothing, and the error says what to
    // do; a CA file that cannot be read is named.
    let out = cli(&https, None, &["zone", "list"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("set VPCIP_CA_CERT"), "{err}");
    let out = cli(
        &format!("http://127.0.0.1:{port}"),
        Some(&ca),
        &["zone", "list"],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(err.contains("use https://"), "{err}");
    let out = cli(&https, Some(&dir.join("no-such-ca.pem")), &["zone", "list"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-ca.pem is not a readable PEM certificate"),
        "{err}"
    );

    // A host agent (working on a namespace of its own) registers and
    // applies the desired state over TLS.
    let ns = format!("vptls{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success(),
        "namespaces need root (scripts/test runs as root)"
    );
    procs.1 = Some(ns.clone());
    // Its address in a registered host network, and a token of its own,
    // which serves the agent routes only, for this one host agent.
    let out = cli(
        &https,
        Some(&ca),
        &["host-network", "create", "underlay", "192.0.2.0/24"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &https,
        Some(&ca),
        &[
            "-o", "json", "token", "create", "--agent", "tls-h1", "--role", "host",
        ],
    );
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let agent_token = token["secret"].as_str().unwrap().to_string();
    let agent = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args([
            "agent",
            "--role",
            "host",
            "--name",
            "tls-h1",
            "--underlay-ip",
            "192.0.2.77",
            "--netns",
            &ns,
            "--netns-prefix",
            &ns,
            "--resync",
            "1",
        ])
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .env("VPCIP_URL", &https)
        .env("VPCIP_TOKEN", &agent_token)
        .env("VPCIP_CA_CERT", &ca)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    procs.0.push(agent);
    let mut applied = false;
    for _ in 0..100 {
        let out = cli(&https, Some(&ca), &["-o", "json", "host", "list"]);
        let hosts: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if hosts.as_array().is_some_and(|h| {
            h.iter()
                .any(|a| a["name"] == "tls-h1" && a["applied_revision"].as_i64() > Some(0))
        }) {
            applied = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        applied,
        "the agent did not report over TLS: {}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
}
