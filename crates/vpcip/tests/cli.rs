//! The CLI against a real `vpcip controller` process: VPCIP_URL and VPCIP_TOKEN,
//! tables for people, `-o json` for scripts, exit code 2 with the API's
//! message when the API refuses, 1 when it cannot be reached.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::process::Command;
use std::time::Duration;
use vpcip_model::paths;

mod support;
use support::{OPERATOR, cli, ok, start, start_with};

#[test]
fn the_url_may_omit_its_scheme_and_a_missing_token_is_named() {
    let s = start();
    let bare = s.url.trim_start_matches("http://").to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["--url", &bare, "zone", "list"])
        .env("VPCIP_TOKEN", OPERATOR)
        .env_remove("VPCIP_URL")
        .output()
        .unwrap();
    ok(&o);
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["--url", "ftp://127.0.0.1:1", "zone", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("http://HOST:PORT"),
        "{err}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["zone", "list"])
        .env("VPCIP_URL", &s.url)
        .env_remove("VPCIP_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--token or set VPCIP_TOKEN"), "{err}");
    // A token read from a file keeps its newline: it works; a token with
    // a character no token has is named.
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["zone", "list"])
        .env("VPCIP_URL", &s.url)
        .env("VPCIP_TOKEN", format!("{OPERATOR}\n"))
        .output()
        .unwrap();
    ok(&o);
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["zone", "list"])
        .env("VPCIP_URL", &s.url)
        .env("VPCIP_TOKEN", format!("{OPERATOR}\tx"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{err}");
    assert!(err.contains("which no token has"), "{err}");
    // Usage errors have their own exit code (64), apart from refusals (2)
    // and failures (1); help is an answer (0).
    for args in [
        &["zone", "frobnicate"][..],
        &["controller", "--token", "x"],
        &["eip", "create"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
            .args(args)
            .env("VPCIP_URL", &s.url)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["eip", "--help"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    // A server that is not there is said once, with its cause.
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["--url", "http://127.0.0.1:1", "zone", "list"])
        .env("VPCIP_TOKEN", OPERATOR)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("127.0.0.1:1/").count(), 1, "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

#[test]
fn cli_session() {
    let s = start();
    let op = |args: &[&str]| cli(&s, OPERATOR, args);
    ok(&op(&["zone", "create", "z1"]));
    ok(&op(&[
        "host-network",
        "create",
        "underlay",
        "192.168.201.0/24",
    ]));
    ok(&op(&[
        "gateway",
        "register",
        "allinone",
        "--address",
        "192.168.201.20",
    ]));
    let seg = ok(&op(&[
        "subnet",
        "create",
        "eip-seg",
        "--type",
        "eip",
        "--range",
        "192.168.202.1-192.168.202.254",
        "--prefix-len",
        "24",
    ]));
    assert!(
        seg.contains("192.168.202.0/24  192.168.201.20  allinone"),
        "the static route is printed: {seg}"
    );

    // A refusal: exit code 2 and the API's message on stderr.
    let bad = op(&[
        "subnet",
        "create",
        "bad",
        "--type",
        "eip",
        "--cidr",
        "192.168.201.0/24",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("EIP segment 192.168.201.0/24 overlaps host network 192.168.201.0/24"),
        "{err}"
    );
    assert!(err.contains("segment_overlaps_host_network"), "{err}");

    // A tenant's token, from -o json.
    let tok: serde_json::Value = serde_json::from_str(&ok(&op(&[
        "token", "create", "--tenant", "acme", "-o", "json",
    ])))
    .unwrap();
    let secret = tok["secret"].as_str().unwrap().to_string();
    let t = |args: &[&str]| cli(&s, &secret, args);
    ok(&t(&["vpc", "create", "vpc1", "--cidr", "10.0.0.0/8"]));
    ok(&t(&[
        "subnet",
        "create",
        "sw1",
        "--vpc",
        "vpc1",
        "--zone",
        "z1",
        "--cidr",
        "10.0.0.0/24",
    ]));
    ok(&t(&["vm", "create", "vm-1", "--subnet", "sw1"]));
    let eip: serde_json::Value = serde_json::from_str(&ok(&t(&[
        "eip",
        "create",
        "--bandwidth",
        "10",
        "--server",
        "vm-1",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(eip["ip"], "192.168.202.1");
    assert_eq!(eip["private_ip"], "10.0.0.2");
    let table = ok(&t(&["eip", "list"]));
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains("192.168.202.1  10 Mbit/s  nat"), "{table}");
    let list: serde_json::Value =
        serde_json::from_str(&ok(&t(&["eip", "list", "-o", "json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Tables name what they refer to; IDs stay in the ID column and in
    // JSON; --field prints one value per line.
    assert!(table.contains("nic vm-1-eth0  vm-1"), "{table}");
    let vms = ok(&t(&["vm", "list"]));
    assert!(vms.contains("vm-1  acme    z1"), "{vms}");
    assert!(!vms.contains("zone-"), "{vms}");
    let nics = ok(&t(&["nic", "list"]));
    assert!(nics.contains("vm-1-eth0  sw1     10.0.0.2"), "{nics}");
    assert!(!nics.contains("subnet-"), "{nics}");
    assert_eq!(ok(&t(&["eip", "list", "--field", "ip"])), "192.168.202.1\n");
    assert_eq!(
        ok(&t(&["vm", "show", "vm-1", "--field", "id"])).trim(),
        list[0]["server_id"].as_str().unwrap()
    );
    // Lists filter as a user asks, with the words creates use.
    let subnets = ok(&t(&["subnet", "list", "--vpc", "vpc1", "--field", "name"]));
    assert_eq!(subnets, "sw1\n");
    let nics = ok(&t(&["nic", "list", "--subnet", "sw1", "--field", "name"]));
    assert!(nics.contains("vm-1-eth0\n"), "{nics}");
    assert_eq!(
        ok(&t(&["eip", "list", "--server", "vm-1", "--field", "ip"])),
        "192.168.202.1\n"
    );
    assert_eq!(ok(&t(&["eip", "list", "--unbound", "--field", "ip"])), "");
    // Columns by heading; YAML for scripts.
    let cols = ok(&t(&["eip", "list", "--columns", "ip,bound to"]));
    assert_eq!(
        cols, "IP             BOUND TO\n192.168.202.1  nic vm-1-eth0\n",
        "{cols}"
    );
    let yaml = ok(&t(&["vm", "show", "vm-1", "-o", "yaml"]));
    assert!(yaml.contains("name: \"vm-1\"\n"), "{yaml}");
    // One vocabulary: `nic create` takes the check as `nic update` does.
    let eni: serde_json::Value = serde_json::from_str(&ok(&t(&[
        "nic",
        "create",
        "eni-x",
        "--subnet",
        "sw1",
        "--source-dest-check",
        "off",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(eni["source_dest_check"], false, "{eni}");
    // guest-config honours -o json: what it is for, and the text.
    let conf: serde_json::Value = serde_json::from_str(&ok(&t(&[
        "nic",
        "guest-config",
        "eni-x",
        "--os",
        "ubuntu",
        "--ifname",
        "eth1",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(conf["interface"], "eth1", "{conf}");
    assert_eq!(conf["format"], "ubuntu", "{conf}");
    assert!(
        conf["config"].as_str().unwrap().contains("netplan"),
        "{conf}"
    );
    let no_host = op(&["host", "show", "h9"]);
    assert!(
        String::from_utf8_lossy(&no_host.stderr).contains("no host h9"),
        "{no_host:?}"
    );
    // Refusals say the CLI's flags, not the API's field names.
    ok(&t(&["vm", "create", "vm-2", "--subnet", "sw1"]));
    let moved = t(&["eip", "bind", "192.168.202.1", "--server", "vm-2"]);
    assert_eq!(moved.status.code(), Some(2));
    let err = String::from_utf8_lossy(&moved.stderr);
    assert!(
        err.contains("pass --allow-reassociation to move it"),
        "{err}"
    );
    let nope = t(&["vm", "show", "vm-1", "--field", "colour"]);
    assert_eq!(nope.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&nope.stderr).contains("--field colour: no such field here"),
        "{nope:?}"
    );

    // The underlay (issue 11): a gateway's address must be a free address
    // of a host network; what the bound EIP needs is not deleted unforced.
    let refused = |args: &[&str], code: &str, says: &str| {
        let out = op(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(code) && err.contains(says), "{args:?}: {err}");
    };
    refused(
        &["gateway", "register", "gw-x", "--address", "192.168.202.9"],
        "underlay_in_eip_segment",
        "underlay address 192.168.202.9 lies in EIP segment 192.168.202.0/24",
    );
    refused(
        &["gateway", "register", "gw-x", "--address", "127.0.0.1"],
        "underlay_reserved",
        "loopback",
    );
    refused(
        &["gateway", "register", "gw-x", "--address", "192.168.201.20"],
        "underlay_in_use",
        "already held by gateway allinone",
    );
    refused(
        &["host-network", "delete", "underlay"],
        "resource_in_use",
        "gateway allinone (192.168.201.20) lies in it",
    );
    refused(
        &["gateway", "delete", "allinone"],
        "last_gateway",
        "gateway allinone is the last gateway and 1 EIP is bound: deleting it makes them unreachable; pass --force",
    );
    // An agent's token names its agent and role.
    let agent_tok: serde_json::Value = serde_json::from_str(&ok(&op(&[
        "token", "create", "--agent", "gw1", "--role", "gateway", "-o", "json",
    ])))
    .unwrap();
    assert_eq!(
        (
            &agent_tok["tenant"],
            &agent_tok["agent"],
            &agent_tok["agent_role"]
        ),
        (&"gw1".into(), &true.into(), &"gateway".into())
    );
    let no_role = op(&["token", "create", "--agent", "gw1"]);
    assert!(!no_role.status.success());
    assert!(String::from_utf8_lossy(&no_role.stderr).contains("--role"));
    let tokens = ok(&op(&["token", "list"]));
    assert!(tokens.contains("gw1 (gateway)"), "{tokens}");
    ok(&op(&["gateway", "delete", "allinone", "--force"]));
    assert!(!ok(&op(&["route", "list"])).contains("allinone"));

    // Tenants do not see each other, and operator commands are refused.
    let forbidden = t(&["zone", "create", "z9"]);
    assert_eq!(forbidden.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&forbidden.stderr)
            .contains("only the platform operator may create zones")
    );

    // `vm delete` says what went with the server and what stays.
    ok(&t(&["nic", "create", "eni-1", "--subnet", "sw1"]));
    ok(&t(&["nic", "attach", "eni-1", "--server", "vm-1"]));
    ok(&t(&["vip", "create", "vip-1", "--subnet", "sw1"]));
    let vm: serde_json::Value =
        serde_json::from_str(&ok(&t(&["vm", "show", "vm-1", "-o", "json"]))).unwrap();
    let primary = vm["nic_ids"][0].as_str().unwrap().to_string();
    ok(&t(&["vip", "bind", "vip-1", "--nic", &primary]));
    let said = ok(&t(&["vm", "delete", "vm-1"]));
    for line in [
        "deleted vm-1",
        "deleted its primary NIC",
        "unbound EIP 192.168.202.1 (still allocated",
        "unbound VIP vip-1",
        "detached ENI eni-1",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }

    // Unknown token, then no server at all.
    let anon = cli(&s, "vpcip_forged", &["eip", "list"]);
    assert_eq!(anon.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&anon.stderr).contains("unauthorized"));
    let gone = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["zone", "list", "--url", "http://127.0.0.1:9"])
        .env("VPCIP_TOKEN", OPERATOR)
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach the vpcip API"));

    // --help lists every resource command.
    let help = ok(&Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .arg("--help")
        .output()
        .unwrap());
    for c in [
        "controller",
        "server",
        "agent",
        "lab",
        "zone",
        "host-network",
        "gateway",
        "host",
        "route",
        "vpc",
        "subnet",
        "sg",
        "nic",
        "vip",
        "eip",
        "token",
    ] {
        assert!(
            help.contains(&format!("  {c} ")),
            "--help lacks {c}: {help}"
        );
    }
}

/// `--log-format json`: one JSON line per API mutation, naming the method,
/// route, resource, tenant and result; refusals too. `/metrics` needs no
/// token and times the requests by route and status.
#[test]
fn mutations_are_logged_as_json_and_requests_timed() {
    let s = start_with(&["--log-format", "json"]);
    ok(&cli(&s, OPERATOR, &["zone", "create", "z-log"]));
    let again = cli(&s, OPERATOR, &["zone", "create", "z-log"]);
    assert_eq!(again.status.code(), Some(2));
    let token: serde_json::Value = serde_json::from_str(&ok(&cli(
        &s,
        OPERATOR,
        &["-o", "json", "token", "create", "--tenant", "acme"],
    )))
    .unwrap();
    let secret = token["secret"].as_str().unwrap().to_string();
    // A tenant's refused mutation (the zone is the operator's to delete).
    let _ = cli(&s, &secret, &["zone", "delete", "z-log"]);
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "vpcip::audit")
        .collect();
    let find = |route: &str, method: &str, result: &str, tenant: &str| {
        audit.iter().any(|v| {
            let f = &v["fields"];
            f["route"] == route
                && f["method"] == method
                && f["result"] == result
                && f["tenant"] == tenant
        })
    };
    assert!(find(paths::ZONES, "POST", "ok", "operator"), "{log}");
    assert!(find(paths::ZONES, "POST", "refused", "operator"), "{log}");
    assert!(find("/v1/zones/{id}", "DELETE", "refused", "acme"), "{log}");
    let created = audit
        .iter()
        .find(|v| v["fields"]["route"] == paths::ZONES)
        .unwrap();
    assert_eq!(created["fields"]["resource"], paths::ZONES, "{created}");
    assert_eq!(created["fields"]["status"], 201, "{created}");

    // /metrics without a token.
    let port = s.url.rsplit(':').next().unwrap();
    let page = http_get_local(port.parse().unwrap(), "/metrics");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("application/openmetrics-text"), "{page}");
    assert!(
        page.contains(
            "vpcip_api_request_duration_seconds_count{method=\"POST\",route=\"/v1/zones\",status=\"201\"} 1"
        ),
        "{page}"
    );
    assert!(
        page.contains("vpcip_api_request_duration_seconds_count{method=\"POST\",route=\"/v1/zones\",status=\"409\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("vpcip_store_errors_total{kind=\"unavailable\"} 0"),
        "{page}"
    );
    assert!(page.trim_end().ends_with("# EOF"), "{page}");
}

/// A plain HTTP/1.1 GET on loopback; the whole answer.
fn http_get_local(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// Before any gateway has reported, `vpcip status` cannot say what the
/// data plane holds: it says so (exit 3), not "none differs"; an agent that
/// registered and never reported is not "silent for 1796059297s".
#[test]
fn status_says_unknown_before_a_gateway_reports() {
    let s = start();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vpcip"))
            .args(args)
            .env("VPCIP_URL", &s.url)
            .env("VPCIP_TOKEN", OPERATOR)
            .output()
            .unwrap()
    };
    ok(&run(&[
        "host-network",
        "create",
        "underlay",
        "192.0.2.0/24",
    ]));
    // An agent registers (as `vpcip agent` does first), and reports nothing.
    let body = r#"{"name":"gw","role":"gateway","underlay_ip":"192.0.2.2"}"#;
    let reg = Command::new("curl")
        .args(["-sf", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {OPERATOR}")])
        .args(["-d", body, &format!("{}/v1/agents", s.url)])
        .output()
        .unwrap();
    assert!(
        reg.status.success(),
        "{}",
        String::from_utf8_lossy(&reg.stderr)
    );
    let o = run(&["status"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(text.contains("unknown: no gateway has reported"), "{text}");
    assert!(!text.contains("none differs"), "{text}");
    assert!(text.contains("no report yet"), "{text}");
    let o = run(&["gateway", "list"]);
    let text = ok(&o);
    assert!(!text.contains("silent for"), "{text}");
}

/// Shell completion scripts; a server that could never be administered
/// (no operator token) does not start.
#[test]
fn completion_scripts_and_a_server_without_an_operator_token() {
    for (shell, marker) in [
        ("bash", "_vpcip()"),
        ("zsh", "#compdef vpcip"),
        ("fish", "complete -c vpcip"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
            .args(["completion", shell])
            .output()
            .unwrap();
        let script = ok(&o);
        assert!(
            script.contains(marker) && script.contains("hypervisor-config"),
            "{shell}"
        );
    }
    let dir = std::env::temp_dir().join(format!("vpcip-notoken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(["controller", "--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}/vpcip.db", dir.display()))
        .env_remove("VPCIP_OPERATOR_TOKEN")
        .env_remove("VPCIP_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no operator token: set VPCIP_OPERATOR_TOKEN"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
