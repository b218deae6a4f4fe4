//! The one vpcip binary: the controller (`vpcip server`) and the CLI client
//! of its API (`vpcip <resource> <verb>`).

mod cli;
mod resources;
mod table;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            Command::Resource(cmd) => resources::run(cmd, &cli.global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 2 for a refusal by the API (bad input, a rule), 1 otherwise.
            let refused = e
                .downcast_ref::<vpcip_client::ClientError>()
                .and_then(|c| c.status())
                .is_some_and(|s| (400..500).contains(&s));
            ExitCode::from(if refused { 2 } else { 1 })
        }
    }
}

async fn serve(args: cli::ServerArgs, log_format: &cli::LogFormat) -> anyhow::Result<()> {
    init_logging(log_format);
    let operator_token = std::env::var("VPCIP_OPERATOR_TOKEN").ok();
    if operator_token.as_deref().is_none_or(str::is_empty) {
        tracing::warn!("VPCIP_OPERATOR_TOKEN is not set: no operator access to the API");
    }
    let store = vpcip_store::Store::open(&args.db).await?;
    let app = vpcip_api::App::new(store, operator_token.as_deref());
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, db = %redact(&args.db), "vpcip server up");
    vpcip_api::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
