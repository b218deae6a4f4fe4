use clap::CommandFactory;

#[test]
fn api_field_names_are_said_as_flags() {
    assert_eq!(
        super::in_flags(
            "EIP 192.168.202.7 is already bound to NIC eni-nic-1; pass allow_reassociation to move it"
        ),
        "EIP 192.168.202.7 is already bound to NIC eni-nic-1; pass --allow-reassociation to move it"
    );
    assert_eq!(
        super::in_flags("invalid bandwidth_mbps: 0 is outside 1..=100000 (invalid_argument)"),
        "invalid --bandwidth: 0 is outside 1..=100000 (invalid_argument)"
    );
    // Only whole words.
    assert_eq!(
        super::in_flags("my_bandwidth_mbps_x"),
        "my_bandwidth_mbps_x"
    );
}

#[test]
fn client_options_given_to_a_command_that_is_not_a_client_are_named() {
    let m = |line: &str| {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        super::misplaced_client_flag(&args)
    };
    let pair = |c: &str, f: &str| Some((c.to_string(), f.to_string()));
    assert_eq!(
        m("vpcip controller --token x"),
        pair("controller", "--token")
    );
    assert_eq!(
        m("vpcip --url=http://a controller"),
        pair("controller", "--url")
    );
    assert_eq!(m("vpcip lab up -o json"), pair("lab", "-o"));
    assert_eq!(m("vpcip allinone --field id"), pair("allinone", "--field"));
    // A client takes them; what follows `--` is another program's.
    assert_eq!(m("vpcip eip list -o json --token x"), None);
    assert_eq!(m("vpcip lab exec web-1 -- curl -o page http://x/"), None);
    assert_eq!(m("vpcip controller --listen 127.0.0.1:9696"), None);
}

#[test]
fn commands_that_are_not_clients_show_no_client_options() {
    let help = |line: &str| {
        let args: Vec<String> = line.split(' ').map(String::from).collect();
        super::help_without_client_flags(&args)
    };
    for line in [
        "vpcip controller --help",
        "vpcip allinone -h",
        "vpcip lab up --help",
        "vpcip vrrp --help",
    ] {
        let text = help(line).unwrap_or_else(|| panic!("{line}: no help"));
        assert!(text.contains("Usage: vpcip "), "{line}: {text}");
        for flag in [
            "--url",
            "--token",
            "--output",
            "--field",
            "--columns",
            super::CLIENT_HEADING,
        ] {
            assert!(!text.contains(flag), "{line} shows {flag}:\n{text}");
        }
    }
    // The server's own options are there.
    assert!(
        help("vpcip controller --help")
            .unwrap()
            .contains("--listen")
    );
    // Clients keep clap's help, with the client options.
    assert_eq!(help("vpcip eip list --help"), None);
    assert_eq!(help("vpcip controller --listen 127.0.0.1:1"), None);
    assert_eq!(help("vpcip lab exec web-1 -- ls --help"), None);
    let mut cmd = super::Cli::command();
    cmd.build();
    let eip = cmd
        .find_subcommand("eip")
        .unwrap()
        .clone()
        .render_help()
        .to_string();
    assert!(eip.contains("--token"), "{eip}");
}

/// Every command and verb says what it does, and every flag and
/// argument what it takes (as the route-coverage test walks the API).
#[test]
fn every_command_and_flag_is_explained() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(format!("{p}: no description"));
            }
            for a in sub.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_global_set() || matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{p} {id}: no help"));
                }
            }
            walk(sub, &p, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&super::Cli::command(), "vpcip", &mut missing);
    assert!(
        missing.is_empty(),
        "{} without help:\n{}",
        missing.len(),
        missing.join("\n")
    );
}
