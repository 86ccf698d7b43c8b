use std::process::ExitCode;

use clap::Parser;
use savepoint_webhook::cli::{Cli, Command};
use savepoint_webhook::cmd;

#[global_allocator]
static ALLOCATOR: savepoint_webhook::Allocator = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    savepoint_webhook::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(cmd::serve::run(*args))),
        Command::Review(args) => match cmd::review::run(&args) {
            Ok(cmd::review::Outcome::Allowed) => return ExitCode::SUCCESS,
            Ok(cmd::review::Outcome::Failed) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
        Command::Crds(args) => {
            let mut crds = if args.cel {
                savepoint_webhook::resources::crds_with_cel(&args.policy.location_rules())
            } else {
                savepoint_webhook::resources::crds()
            };
            if let Some(only) = args.only {
                crds.retain(|crd| crd.spec.names.plural == only.plural());
            }
            savepoint_webhook::resources::to_yaml(&crds)
                .map_err(anyhow::Error::from)
                .and_then(|yaml| Ok(savepoint_webhook::cli::print_out(&yaml)?))
        }
        Command::Certs(args) => cmd::certs::run(&args),
        Command::Audit(args) => match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(cmd::audit::run(&args)))
        {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
        Command::Inspect(args) => match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(cmd::inspect::run(&args)))
        {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
        Command::Probe(args) => match tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(cmd::probe::run(&args)))
        {
            Ok(true) => return ExitCode::SUCCESS,
            Ok(false) => return ExitCode::from(1),
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
