//! `callgrade check FILE`: the server's validator, offline.

use anyhow::Context;
use callgrade_core::{parse_json, validate_batch, FieldError};
use clap::Args;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::Output;

#[derive(Args)]
pub struct CheckArgs {
    /// The payload file, or - for standard input.
    file: PathBuf,
    /// The server's limits, with its flags and environment variables.
    #[command(flatten)]
    limits: crate::serve::PayloadLimitArgs,
}

#[derive(Serialize)]
struct Report {
    valid: bool,
    calls: usize,
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

pub fn run(args: CheckArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let bytes = read_input(&args.file)?;
    let limits = args.limits.limits();
    let parsed = limits
        .check_json_values(&bytes)
        .map_err(|too_many| FieldError::new("$", too_many))
        .and_then(|()| parse_json(&bytes).map_err(|e| FieldError::new("$", e.to_string())));
    let report = match parsed {
        Err(e) => Report {
            valid: false,
            calls: 0,
            errors: vec![e],
            warnings: Vec::new(),
        },
        Ok(body) => match validate_batch(&body, &limits) {
            Ok(batch) => Report {
                valid: true,
                calls: batch.calls.len(),
                warnings: batch.calls.into_iter().flat_map(|c| c.warnings).collect(),
                errors: Vec::new(),
            },
            Err(errors) => Report {
                valid: false,
                calls: 0,
                errors,
                warnings: Vec::new(),
            },
        },
    };
    out.print(&report, || {
        let mut text = String::new();
        for e in &report.errors {
            text.push_str(&format!("error   {}: {}\n", e.path, e.message));
        }
        for w in &report.warnings {
            text.push_str(&format!("warning {}: {}\n", w.path, w.message));
        }
        if report.valid {
            text.push_str(&format!(
                "valid: {} call{} (agent and run ids are checked by the server)",
                report.calls,
                if report.calls == 1 { "" } else { "s" }
            ));
        } else {
            text.push_str(&format!(
                "invalid: {} problem{}",
                report.errors.len(),
                if report.errors.len() == 1 { "" } else { "s" }
            ));
        }
        text
    });
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
