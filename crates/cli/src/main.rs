//! `callgrade`: the server and its admin commands in one binary.

mod admin;
mod bench;
mod bench_audio;
mod bench_http;
mod bench_ingest;
mod bench_pages;
mod bench_simulate;
mod bench_voice;
mod check;
mod ci_report;
mod corpus;
mod database;
mod keys;
mod metrics;
mod output;
mod scenario;
mod send;
mod serve;
mod test_run;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use output::Output;

/// A parsed call is a tree of many small allocations, made on one thread and often freed on
/// another; mimalloc's thread-local free lists serve that pattern better than glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "callgrade",
    version,
    about = "Self-hosted QA and observability for voice AI agents",
    long_about = "Self-hosted QA and observability for voice AI agents.\n\n\
        Receives call transcripts on a Cekura-compatible webhook, stores them durably (embedded \
        SQLite, or PostgreSQL for several instances), evaluates every call with builtin metrics, \
        LLM judges, scripts and a rubric, matches calls to test runs, and serves it all through \
        a REST API and a dashboard.\n\n\
        Quick start:\n  callgrade serve &\n  callgrade project create staging\n  \
        callgrade agent create --project staging --name support-bot\n  \
        callgrade send --url <webhook_url> --key <api_key> payload.json"
)]
struct Cli {
    #[command(flatten)]
    db: DbArgs,
    /// Print one JSON object on stdout instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives; shared by the server and the admin commands, so both can run at once.
#[derive(clap::Args, Clone)]
pub struct DbArgs {
    /// Directory for the embedded SQLite database (created if missing).
    #[arg(
        long,
        global = true,
        env = "CALLGRADE_DATA_DIR",
        default_value = "./callgrade-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL; overrides --data-dir: `sqlite:PATH` (embedded) or
    /// `postgres://USER@HOST/DB` (several instances on one database).
    #[arg(
        long,
        global = true,
        env = "CALLGRADE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Externally visible base URL of the server, used to print webhook URLs.
    #[arg(
        long,
        global = true,
        env = "CALLGRADE_PUBLIC_URL",
        default_value = "http://127.0.0.1:7300"
    )]
    pub public_url: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: webhook, REST API, dashboard and evaluation workers.
    Serve(serve::ServeArgs),
    /// Create, list projects and rotate their API keys.
    #[command(subcommand)]
    Project(admin::ProjectCommand),
    /// Create, list, rotate and revoke a project's API keys, each with its scopes.
    #[command(subcommand)]
    Key(keys::KeyCommand),
    /// Create and list agents (their id is the `agent_id` of webhook payloads).
    #[command(subcommand)]
    Agent(admin::AgentCommand),
    /// The dashboard's admin token.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Create, list and show test scenarios.
    #[command(subcommand)]
    Scenario(scenario::ScenarioCommand),
    /// Start test runs and wait for their verdict (a CI step).
    #[command(subcommand)]
    Test(TestCommand),
    /// Run evaluation workers without the HTTP server (scale evaluation apart from ingest).
    Worker(serve::WorkerArgs),
    /// List metrics, apply a TOML file of definitions, test a script on a stored call.
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// Validate a webhook payload offline with the server's own validator.
    Check(check::CheckArgs),
    /// POST a webhook payload to a server and print its receipt.
    Send(send::SendArgs),
    /// Apply pending database migrations and say where the data is (serve and every admin
    /// command also migrate on start).
    Migrate,
    /// Copy this SQLite installation (--data-dir or --database-url) into an empty PostgreSQL
    /// database, every table and row.
    Copy {
        /// The PostgreSQL URL to copy into, e.g. postgres://user@host/callgrade.
        #[arg(long)]
        to: String,
    },
    /// Measure speed (builtin metrics, evaluation by call length, ingest, dashboard pages).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the OpenAPI document of the REST API.
    Openapi,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create the dashboard's admin token (printed once), or replace it with --rotate (which
    /// signs everyone out).
    Token {
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Subcommand)]
enum TestCommand {
    /// Create a result with one run per scenario × frequency; print each run's id and tester
    /// number for the harness; with --wait, wait for every run: exit 0 when all completed and
    /// passed, 1 when any did not, 2 when the rubric could not decide (no rule had a value).
    Start(test_run::TestStartArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return out.fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let result = match cli.command {
            Command::Serve(args) => serve::run(&cli.db, args).await,
            Command::Project(cmd) => admin::project(&cli.db, cmd, &out).await,
            Command::Key(cmd) => keys::run(&cli.db, cmd, &out).await,
            Command::Agent(cmd) => admin::agent(&cli.db, cmd, &out).await,
            Command::Admin(AdminCommand::Token { rotate }) => {
                admin::token(&cli.db, rotate, &out).await
            }
            Command::Scenario(cmd) => scenario::run(&cli.db, cmd, &out).await,
            Command::Test(TestCommand::Start(args)) => test_run::start(&cli.db, args, &out).await,
            Command::Worker(args) => serve::worker(&cli.db, args).await,
            Command::Metrics(cmd) => metrics::run(&cli.db, cmd, &out).await,
            Command::Check(args) => check::run(args, &out),
            Command::Send(args) => send::run(args, &out).await,
            Command::Migrate => database::migrate(&cli.db, &out).await,
            Command::Copy { to } => database::copy(&cli.db, &to, &out).await,
            Command::Bench(cmd) => bench::run(cmd, &out).await,
            Command::Openapi => {
                let spec = callgrade_server::openapi();
                println!(
                    "{}",
                    spec.to_pretty_json().unwrap_or_else(|e| e.to_string())
                );
                Ok(ExitCode::SUCCESS)
            }
        };
        result.unwrap_or_else(|e| out.fail(&format!("{e:#}")))
    })
}
