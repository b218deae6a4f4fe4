//! The one vpcip binary: the controller (`vpcip controller`) and the CLI client
//! of its API (`vpcip <resource> <verb>`).

mod allinone;
mod cli;
mod guest;
mod lab;
mod resources;
mod table;
mod vrrp;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command};

/// The exit code of a usage error (sysexits' EX_USAGE). The others: 0 done,
/// 1 a failure (the API cannot be reached, an internal error), 2 refused by
/// the API (a rule, bad input, not found), 3 `status` or `check-route`
/// found something wrong.
const USAGE: u8 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(help) = cli::help_without_client_flags(&args) {
        print!("{help}");
        return ExitCode::SUCCESS;
    }
    if let Some((command, flag)) = cli::misplaced_client_flag(&args) {
        eprintln!(
            "error: {flag} is an option of the API's clients; `vpcip {command}` does not take it{}",
            if command == "controller" || command == "allinone" {
                " (the operator's token is VPCIP_OPERATOR_TOKEN or operator_token in the config file)"
            } else {
                ""
            }
        );
        return ExitCode::from(USAGE);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version are answers (exit 0); anything else is a usage
        // error, with an exit code of its own (64, sysexits' EX_USAGE):
        // distinct from an API refusal (2) and a failure (1).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE } else { 0 });
        }
    };
    let no_token = cli.global.token.is_none();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Server(args) => serve(args, &cli.log_format).await,
            Command::Agent(args) => agent(args, &cli.global, &cli.log_format).await,
            Command::Lab(cmd) => lab::run(cmd).await,
            Command::Guest(cli::GuestCmd::Check { vip, role }) => guest::check(vip, role),
            Command::Vrrp(args) => {
                init_logging(&cli.log_format);
                // Its own thread: the speaker blocks, and opens netlink
                // runtimes of its own.
                std::thread::spawn(move || vrrp::run(args))
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the VRRP speaker panicked")))
            }
            Command::Allinone(args) => {
                init_logging(&cli.log_format);
                allinone::run(args).await
            }
            Command::Completion { shell } => {
                use clap::CommandFactory;
                use std::io::Write;
                // Made whole first: a closed pipe is an error, not a panic.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cli::Cli::command(), "vpcip", &mut script);
                std::io::stdout()
                    .write_all(&script)
                    .map_err(|e| anyhow::anyhow!("write the completion script: {e}"))
            }
            Command::Resource(cmd) => resources::run(cmd, &cli.global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::in_flags(&format!("{e:#}")));
            let status = e
                .downcast_ref::<vpcip_client::ClientError>()
                .and_then(|c| c.status());
            if status == Some(401) && no_token {
                eprintln!("hint: no token was given: pass --token or set VPCIP_TOKEN");
            }
            // 2 for a refusal by the API (bad input, a rule), 1 otherwise.
            let refused = status.is_some_and(|s| (400..500).contains(&s));
            ExitCode::from(if refused { 2 } else { 1 })
        }
    }
}

use vpcip_model::config::ServerConfig;

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<ServerConfig> {
    let Some(path) = path else {
        return Ok(ServerConfig::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    ServerConfig::parse(&text).with_context(|| format!("parse {}", path.display()))
}

async fn serve(args: cli::ServerArgs, log_format: &cli::LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let config = load_config(args.config.as_deref())?;
    let listen = args
        .listen
        .or(config.listen)
        .unwrap_or_else(|| "127.0.0.1:9696".into());
    let db = args
        .db
        .or(config.db)
        .unwrap_or_else(|| "sqlite://./vpcip.db".into());
    let operator_token = std::env::var("VPCIP_OPERATOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or(config.operator_token);
    // Without it nothing could ever make a zone, a segment or a token: a
    // server that can never be administered does not start.
    if operator_token.is_none() {
        anyhow::bail!(
            "no operator token: set VPCIP_OPERATOR_TOKEN or operator_token in the config file (without it nothing could create zones, EIP segments or tokens)"
        );
    }
    let infra_allow = config
        .isolation
        .services()
        .map_err(|e| anyhow::anyhow!("the configuration file's [isolation] allow: {e}"))?;
    let connections = args.db_connections.or(config.db_connections);
    let store = vpcip_store::Store::open_with(&db, connections)
        .await?
        .with_quotas(config.quotas)
        .with_infra_allow(infra_allow)
        .with_max_sg_rules(config.security_groups.max_rules)
        .with_traffic_sample_secs(config.console.traffic_sample_seconds)
        .with_dhcp(config.dhcp.checked()?);
    let app = vpcip_api::App::new(store, operator_token.as_deref());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let tls_files = (
        args.tls_cert.clone().or(config.tls_cert.clone()),
        args.tls_key.clone().or(config.tls_key.clone()),
    );
    if let Some(addr) = &args.console_listen {
        let console = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} for the console"))?;
        tracing::info!(listen = %console.local_addr()?, "web console at /ui");
        let app = app.clone();
        let tls = match &tls_files {
            (Some(cert), Some(key)) => Some(vpcip_api::tls::server_config(cert, key)?),
            _ => None,
        };
        tokio::spawn(async move {
            let done = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let served = match tls {
                Some(tls) => vpcip_api::console::serve_tls(console, app, done, tls).await,
                None => vpcip_api::console::serve(console, app, done).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "the web console stopped");
            }
        });
    }
    match (
        args.tls_cert.or(config.tls_cert),
        args.tls_key.or(config.tls_key),
    ) {
        (Some(cert), Some(key)) => {
            let tls = vpcip_api::tls::server_config(&cert, &key)?;
            tracing::info!(listen = %listener.local_addr()?, db = %redact(&db), cert = %cert.display(), "vpcip controller up (TLS)");
            vpcip_api::serve_tls(listener, app, shutdown, tls).await?;
        }
        (None, None) => {
            tracing::info!(listen = %listener.local_addr()?, db = %redact(&db), "vpcip controller up");
            vpcip_api::serve(listener, app, shutdown).await?;
        }
        _ => anyhow::bail!("TLS needs both a certificate and its key (tls_cert and tls_key)"),
    }
    Ok(())
}

async fn agent(
    args: cli::AgentArgs,
    global: &cli::Global,
    log_format: &cli::LogFormat,
) -> anyhow::Result<()> {
    init_logging(log_format);
    let client = vpcip_client::Client::new(&global.url, global.token.as_deref());
    let cfg = vpcip_agent::AgentConfig {
        name: args.name.clone(),
        role: match args.role {
            cli::Role::Gateway => vpcip_model::desired::AgentRole::Gateway,
            cli::Role::Host => vpcip_model::desired::AgentRole::Host,
        },
        underlay_ip: args.underlay_ip,
        netns_prefix: args.netns_prefix,
        node_netns: match &args.netns {
            Some(n) => vpcip_sys::netns::named(n),
            None => "/proc/self/ns/net".into(),
        },
        resync: std::time::Duration::from_secs(args.resync.max(1)),
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| format!("/run/vpcip/agent-{}", args.name).into()),
        metrics: Default::default(),
        bird: match (&args.bird_socket, &args.bird_config) {
            (Some(socket), Some(config)) => Some(vpcip_agent::bgp::Bird {
                socket: socket.clone(),
                config: config.clone(),
            }),
            _ => None,
        },
    };
    if let Some(listen) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listen on {listen} for metrics"))?;
        let bound = listener.local_addr()?;
        tracing::info!(listen = %bound, "agent metrics at /metrics");
        // Said where a supervisor (or the lab) finds it, port 0 included.
        let file = cfg.state_dir.join("metrics-listen");
        std::fs::create_dir_all(&cfg.state_dir)
            .and_then(|()| std::fs::write(&file, bound.to_string()))
            .with_context(|| format!("write {}", file.display()))?;
        let metrics = cfg.metrics.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [("content-type", vpcip_api::metrics::CONTENT_TYPE)],
                        metrics.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    vpcip_agent::run(client, cfg).await
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn init_logging(format: &cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in files or journals.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@db/x"),
            "postgres://…@db/x"
        );
        assert_eq!(super::redact("sqlite://./vpcip.db"), "sqlite://./vpcip.db");
    }
}
