//! Network-namespace worlds for tests, demos and benchmarks: every
//! namespace carries the world's unique prefix and is removed when the world
//! is dropped (also when a test fails), and every process started in it is
//! ended by its PID. Traffic helpers talk only to addresses inside the
//! world's own namespaces.
//!
//! The world is wired with iproute2 (the lab plays the physical network and
//! the hypervisors, not an agent; the agents themselves use netlink only).

pub mod cloud;
pub mod qemu;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vpcip_sys::netns::{in_netns, named};

/// A set of namespaces sharing one unique prefix.
pub struct World {
    pub prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// Left running for the user (`keep`): nothing is removed on drop.
    kept: bool,
}

impl World {
    /// A new, empty world. Fails (with the reason) when not run as root.
    pub fn new(tag: &str) -> World {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network-namespace tests build namespaces and must run as root (scripts/test runs them so)"
        );
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        World {
            prefix: format!("{tag}{}x{:04x}-", std::process::id(), (t >> 8) & 0xffff),
            namespaces: vec![],
            children: vec![],
            kept: false,
        }
    }

    /// The full name of node `node`.
    pub fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    /// Adds a namespace (full name `prefix + node`) with loopback up.
    pub fn add_node(&mut self, node: &str) -> String {
        let ns = self.ns(node);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(node, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A veth pair between two nodes, with an address (CIDR) on each end.
    pub fn link(&self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        let (na, nb) = (self.ns(a), self.ns(b));
        run(
            "ip",
            &[
                "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &nb,
            ],
        );
        for (node, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            self.exec(node, &["ip", "addr", "add", addr, "dev", ifname]);
            self.exec(node, &["ip", "link", "set", ifname, "up"]);
        }
    }

    /// Runs a command in a node and returns its standard output; panics
    /// (with its standard error) when it fails.
    pub fn exec(&self, node: &str, args: &[&str]) -> String {
        let ns = self.ns(node);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Like `exec`, but returns None instead of panicking.
    pub fn try_exec(&self, node: &str, args: &[&str]) -> Option<String> {
        let ns = self.ns(node);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Keeps a process to end (by PID) when the world goes.
    pub fn adopt(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    /// How many processes the world has adopted (the next one's index).
    pub fn processes(&self) -> usize {
        self.children.len()
    }

    /// The PID of an adopted process.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.children.get(index).map(Child::id)
    }

    /// Keeps the world when this handle goes (a lab left running for the
    /// user; `vpcip lab down` removes it by its prefix). Adopted processes
    /// keep running too.
    pub fn keep(mut self) -> String {
        self.kept = true;
        self.namespaces.clear();
        for c in std::mem::take(&mut self.children) {
            std::mem::forget(c);
        }
        self.prefix.clone()
    }

    /// Removes every namespace whose name starts with `prefix` (a world left
    /// by `keep`, or by a crash).
    pub fn remove_all(prefix: &str) -> usize {
        let mut n = 0;
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix)
                    && Command::new("ip")
                        .args(["netns", "del", &name])
                        .status()
                        .is_ok_and(|s| s.success())
                {
                    n += 1;
                }
            }
        }
        n
    }

    /// A world with a chosen prefix (the lab's), instead of a unique one.
    pub fn with_prefix(prefix: &str) -> World {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network-namespace worlds must be built as root"
        );
        World {
            prefix: prefix.to_string(),
            namespaces: vec![],
            children: vec![],
            kept: false,
        }
    }

    /// Ends an adopted process with SIGKILL, as a crash would.
    pub fn kill(&mut self, index: usize) {
        let c = &mut self.children[index];
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !self.kept {
            // Namespaces the world's agents made (VPC routers) carry its
            // prefix too.
            World::remove_all(&self.prefix);
        }
    }
}

/// Runs `cmd` and panics with its output when it fails; its stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP server in namespace `ns` that answers every line of every
/// connection with `<peer address> <line>`; it stops accepting after
/// `limit`. Returns once it listens.
pub fn echo_server(ns: &str, port: u16, limit: Duration) -> std::thread::JoinHandle<()> {
    let path = named(ns);
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let entered = std::fs::File::open(&path)
            .ok()
            .and_then(|f| nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok());
        let listener = entered.and_then(|_| TcpListener::bind(("0.0.0.0", port)).ok());
        let Some(l) = listener else {
            let _ = tx.send(false);
            return;
        };
        let _ = l.set_nonblocking(true);
        let _ = tx.send(true);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match l.accept() {
                Ok((s, peer)) => {
                    std::thread::spawn(move || serve_lines(s, peer, deadline));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    assert_eq!(
        rx.recv().ok(),
        Some(true),
        "echo server in {ns} could not listen on {port}"
    );
    h
}

fn serve_lines(s: TcpStream, peer: SocketAddr, deadline: Instant) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = match s.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if w.write_all(format!("{} {}", peer.ip(), line).as_bytes())
                    .is_err()
                {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A UDP server in namespace `ns` that answers every datagram with
/// `<peer address> <datagram>`, until `limit` passes. Returns once bound.
pub fn udp_echo_server(ns: &str, port: u16, limit: Duration) -> std::thread::JoinHandle<()> {
    let path = named(ns);
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let entered = std::fs::File::open(&path)
            .ok()
            .and_then(|f| nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok());
        let sock = entered.and_then(|_| std::net::UdpSocket::bind(("0.0.0.0", port)).ok());
        let Some(sock) = sock else {
            let _ = tx.send(false);
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let _ = tx.send(true);
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let mut reply = format!("{} ", peer.ip()).into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, peer);
            }
        }
    });
    assert_eq!(
        rx.recv().ok(),
        Some(true),
        "UDP echo server in {ns} could not bind {port}"
    );
    h
}

/// Sends one datagram from namespace `ns` and returns the answer (a few
/// tries, 300 ms each), or None.
pub fn udp_ask(ns: &str, to: SocketAddr, line: &str) -> Option<String> {
    let line = line.to_string();
    in_netns(&named(ns), move || {
        let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .ok()?;
        let mut buf = [0u8; 1500];
        for _ in 0..3 {
            sock.send_to(line.as_bytes(), to).ok()?;
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                return String::from_utf8(buf[..n].to_vec()).ok();
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// A client connection opened from inside a namespace.
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects from namespace `ns`; None when nothing answers in time.
    pub fn open(ns: &str, to: SocketAddr, timeout: Duration) -> Option<Conn> {
        in_netns(&named(ns), move || {
            TcpStream::connect_timeout(&to, timeout).ok()
        })
        .ok()
        .flatten()
        .map(|stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
            Conn { stream }
        })
    }

    /// The connection's own address and port (its client's side).
    pub fn local(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Sends a line and returns the server's answer line.
    pub fn ask(&mut self, line: &str) -> Option<String> {
        self.stream.write_all(format!("{line}\n").as_bytes()).ok()?;
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => out.push(byte[0]),
                _ => return None,
            }
        }
        String::from_utf8(out).ok()
    }
}

/// One question on a new connection: the answer, or None.
pub fn ask_once(ns: &str, to: SocketAddr, line: &str) -> Option<String> {
    Conn::open(ns, to, Duration::from_millis(800))?.ask(line)
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The outside client's address in [`client_router_vm`].
pub const OUTSIDE_CLIENT: &str = "198.51.100.10";

/// The smallest EIP world: an outside client (198.51.100.10/24) — a router
/// (198.51.100.1 on its uplink, 10.0.0.1/24 inside, forwarding) — a VM
/// (10.0.0.2/24). The client routes `eip_segment` to the router.
pub fn client_router_vm(w: &mut World, router: &str, eip_segment: &str) {
    for n in ["client", router, "vm"] {
        w.add_node(n);
    }
    w.link(
        "client",
        "eth0",
        &format!("{OUTSIDE_CLIENT}/24"),
        router,
        vpcip_sys::nft::UPLINK,
        "198.51.100.1/24",
    );
    w.link("vm", "eth0", "10.0.0.2/24", router, "in0", "10.0.0.1/24");
    w.exec(
        "client",
        &["ip", "route", "add", eip_segment, "via", "198.51.100.1"],
    );
    w.exec("vm", &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    w.exec(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
}

/// `GET /` from namespace `ns` to `to`: the body of the answer (the lab's
/// web servers say who they are), or None.
pub fn http_get(ns: &str, to: SocketAddr) -> Option<String> {
    in_netns(&named(ns), move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split("\r\n\r\n").nth(1).map(str::to_string)
    })
    .ok()
    .flatten()
}

/// A plain-HTTP page on loopback (`http://HOST:PORT/PATH`, a metrics
/// page): the whole answer, headers included, or empty.
pub fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut c) = TcpStream::connect(host) else {
        return String::new();
    };
    let _ = write!(
        c,
        "GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

/// The virtualenv holding Playwright for the browser tests
/// (`VPCIP_BROWSER_VENV`, made by scripts/browser-tools), with Debian's
/// Chromium beside it; panics saying how to get them when either is
/// missing (the tier fails, loudly, rather than skipping).
pub fn browser_venv() -> std::path::PathBuf {
    let v = std::env::var_os("VPCIP_BROWSER_VENV").expect(
        "VPCIP_BROWSER_VENV is not set: run scripts/browser-tools (scripts/test does) and point it there",
    );
    let v = std::path::PathBuf::from(v);
    assert!(
        v.join("bin/python").exists(),
        "{} has no bin/python: run scripts/browser-tools",
        v.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "no /usr/bin/chromium: run scripts/browser-tools"
    );
    v
}
