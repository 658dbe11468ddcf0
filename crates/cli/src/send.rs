//! `callgrade send`: post a payload like a sender would, and show the receipt.

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::check::read_input;
use crate::output::Output;

#[derive(Args)]
pub struct SendArgs {
    /// The webhook URL (`project create` prints it).
    #[arg(long)]
    url: String,
    /// The project's API key, sent as X-CEKURA-API-KEY.
    #[arg(long, env = "CALLGRADE_API_KEY", hide_env_values = true)]
    key: String,
    /// The payload file, or - for standard input.
    file: PathBuf,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub async fn run(args: SendArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let body = read_input(&args.file)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let response = client
        .post(&args.url)
        .header("content-type", "application/json")
        .header("x-cekura-api-key", &args.key)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let text = response.text().await.context("cannot read the answer")?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let value = serde_json::json!({ "status": status.as_u16(), "body": body });
    out.print(&value, || {
        format!(
            "HTTP {status}\n{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        )
    });
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
