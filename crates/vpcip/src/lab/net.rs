//! What runs in the lab's namespaces: the VMs' web server, GETs from a
//! node, a node's routes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

/// Node `ns`'s route to `ip` when it was learnt by BGP.
pub(super) fn route_on(ns: &str, ip: std::net::Ipv4Addr) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "route", "show", &ip.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.contains("proto bird").then_some(text)
}

pub(super) fn w_ns(prefix: &str, node: &str) -> String {
    format!("{prefix}{node}")
}

/// GETs `/` from namespace `ns` until it answers (10 s at most).
pub(super) async fn poll_get(ns: &str, to: SocketAddr) -> Option<String> {
    for _ in 0..100 {
        if let Some(body) = http_get(ns, to) {
            return Some(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

pub(super) fn http_get(ns: &str, to: SocketAddr) -> Option<String> {
    vpcip_sys::netns::in_netns(&vpcip_sys::netns::named(ns), move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {}\r\n\r\n", to.ip()).as_bytes())
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split("\r\n\r\n").nth(1).map(str::to_string)
    })
    .ok()
    .flatten()
}

/// The lab VM's web server: answers every request with who it is and who
/// asked.
pub(super) fn httpd(netns: &str, port: u16) -> anyhow::Result<()> {
    let listener = vpcip_sys::netns::in_netns(&vpcip_sys::netns::named(netns), move || {
        TcpListener::bind(("0.0.0.0", port))
    })??;
    let host = netns.to_string();
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let peer = s
            .peer_addr()
            .map(|p| p.ip().to_string())
            .unwrap_or_default();
        let local = s
            .local_addr()
            .map(|p| p.ip().to_string())
            .unwrap_or_default();
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        let body = format!("hello from {host} ({local}); you are {peer}\n");
        let _ = s.write_all(
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    Ok(())
}
