//! The command line: `vpcip controller`, and `vpcip <resource> <verb>` for every
//! resource of the API.

use std::net::Ipv4Addr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

#[derive(Parser)]
#[command(
    name = "vpcip",
    version,
    about = "Elastic IPs and Virtual IPs for private clouds"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Log format of the long-running commands.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The command and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the API client's flags stand in the clients' help (the commands
/// that are not clients neither show nor take them).
const CLIENT_HEADING: &str = "API client options (for the commands that call the API)";

/// The commands that are not clients of the API: the API client's flags
/// mean nothing to them.
const NOT_CLIENTS: [&str; 6] = [
    "controller",
    "allinone",
    "vrrp",
    "guest",
    "lab",
    "completion",
];

/// An API client's flag given to a command that is not a client of the API
/// (`vpcip controller --token …`), as (command, flag): refused, not ignored.
pub fn misplaced_client_flag(args: &[String]) -> Option<(String, String)> {
    let command = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .filter(|c| NOT_CLIENTS.contains(&c.as_str()))?;
    // Stop at `--`: what follows is not vpcip's (`lab exec … -- cmd -o x`).
    let flag = args
        .iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .find(|a| {
            let name = a.split('=').next().unwrap_or_default();
            matches!(
                name,
                "--url" | "--token" | "--output" | "-o" | "--field" | "--columns"
            ) || (a.starts_with("-o") && !a.starts_with("--"))
        })?;
    Some((
        command.clone(),
        flag.split('=').next().unwrap_or_default().to_string(),
    ))
}

/// The help of a command that is not a client of the API (`vpcip controller
/// --help`, `vpcip lab up -h`), without the API client's flags, which clap
/// would show there as they are global; None for other command lines.
pub fn help_without_client_flags(args: &[String]) -> Option<String> {
    use clap::CommandFactory;
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .map(String::as_str)
        .collect();
    if !words.iter().any(|a| matches!(*a, "-h" | "--help")) {
        return None;
    }
    let path: Vec<&str> = words
        .iter()
        .copied()
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !NOT_CLIENTS.contains(path.first()?) {
        return None;
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut sub = &cmd;
    for word in &path {
        match sub.find_subcommand(word) {
            Some(s) => sub = s,
            None => break,
        }
    }
    let client = ["url", "token", "output", "field", "columns"];
    let mut shown = sub.clone().mut_args(|a| {
        if client.contains(&a.get_id().as_str()) {
            a.hide(true)
        } else {
            a
        }
    });
    Some(shown.render_help().to_string())
}

/// The API's field names in its messages, and the CLI flags that set them.
const FLAGS_OF_FIELDS: [(&str, &str); 9] = [
    ("allow_reassociation", "--allow-reassociation"),
    ("bandwidth_mbps", "--bandwidth"),
    ("source_dest_check", "--source-dest-check"),
    ("security_groups", "--sg"),
    ("client_token", "--client-token"),
    ("page_token", "--page-token"),
    ("prefix_len", "--prefix-len"),
    ("secondary_cidrs", "add-cidr"),
    ("nic_id", "--nic"),
];

/// An API message as a CLI user reads it: the API's field names (which a
/// script of the API sees) said as the flags that set them.
pub fn in_flags(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for (field, flag) in FLAGS_OF_FIELDS {
            if let Some(after) = rest.strip_prefix(field) {
                let before_ok = !out
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                let after_ok = !after
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if before_ok && after_ok {
                    out.push_str(flag);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The API's URL: `http://` is assumed when no scheme is given
/// (`127.0.0.1:9696`); a scheme other than http or https is refused.
pub fn api_url(s: &str) -> Result<String, String> {
    // Several controllers, comma-separated: each one checked.
    if s.contains(',') {
        return s
            .split(',')
            .map(api_url)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(","));
    }
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(s.to_string()),
        Some((scheme, _)) => Err(format!(
            "the API's URL is http://HOST:PORT or https://HOST:PORT, not {scheme}://…"
        )),
        None if !s.is_empty() => Ok(format!("http://{s}")),
        None => Err("the API's URL is empty".into()),
    }
}

/// A token as given (`--token`, `VPCIP_TOKEN`): surrounding whitespace (the
/// newline of a file it was read from) dropped; anything else a header
/// cannot carry refused by name.
pub fn api_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if let Some(c) = t.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the token holds {c:?}, which no token has: check --token or VPCIP_TOKEN"
        ));
    }
    Ok(t.to_string())
}

#[derive(Args, Clone)]
pub struct Global {
    /// The controller's API; several controllers sharing one PostgreSQL
    /// comma-separated (`http://c1:9696,http://c2:9696`): a request that
    /// cannot reach one goes to the next (agents fail over so).
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        env = "VPCIP_URL",
        default_value = "http://127.0.0.1:9696",
        value_parser = api_url
    )]
    pub url: String,
    /// Bearer token (the operator's, or a tenant's).
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        env = "VPCIP_TOKEN",
        hide_env_values = true,
        value_parser = api_token
    )]
    pub token: Option<String>,
    /// Output: a table for people, JSON or YAML for scripts.
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        value_enum,
        default_value = "table"
    )]
    pub output: Output,
    /// Print only this field of what the command shows or makes, one value
    /// per line, for scripts: `--field id`, `--field ip`, `--field secret`.
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "NAME")]
    pub field: Option<String>,
    /// A table's columns, by their headings, in this order: `--columns
    /// NAME,IP,"BOUND TO"` (any case).
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_delimiter = ',')]
    pub columns: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller: REST API and store.
    #[command(name = "controller")]
    Server(ServerArgs),
    /// Run a gateway or host agent: watch the controller, program the kernel.
    Agent(AgentArgs),
    /// A small cloud in network namespaces on this machine (as root).
    #[command(subcommand)]
    Lab(LabCmd),
    /// Controller, gateway agent and host agent on this one node, with
    /// SQLite: the way to first deploy (as root).
    Allinone(AllinoneArgs),
    /// Tools to run inside a guest.
    #[command(subcommand)]
    Guest(GuestCmd),
    /// A VRRPv3 speaker for guests (RFC 5798), interoperating with
    /// keepalived: holds the VIPs on the interface while master.
    Vrrp(VrrpArgs),
    /// The shell's completion script, on standard output: e.g. `vpcip
    /// completion bash > /etc/bash_completion.d/vpcip`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Resource(Resource),
}

mod compute;
mod daemons;
mod network;
mod resources;

pub use compute::*;
pub use daemons::*;
pub use network::*;
pub use resources::*;

#[cfg(test)]
mod tests;
