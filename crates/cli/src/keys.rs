//! A project's API keys from the command line: create with scopes, list, rotate, revoke.

use anyhow::anyhow;
use callgrade_app::{keys, App, AppError, AppSettings};
use callgrade_core::access::Scope;
use callgrade_store::{ApiKey, Project, ProjectKey};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use serde_json::json;
use std::process::ExitCode;

use crate::admin::find_project;
use crate::output::Output;
use crate::DbArgs;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create a key with the scopes given; prints it (it is shown only now). A sender needs
    /// only `--scope ingest`.
    Create {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// What the key is for, e.g. "production sender" or "CI".
        #[arg(long)]
        name: String,
        /// `ingest` (send calls, nothing else), `read`, `write` (includes read) or `admin`
        /// (everything, and keys); repeat for several.
        #[arg(long = "scope", required = true,
            value_parser = clap::builder::PossibleValuesParser::new(Scope::ALL.map(Scope::as_str)))]
        scopes: Vec<String>,
        /// Days until the key stops working (default: never).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List the project's keys (never the keys themselves): scopes, expiry, last use.
    List {
        /// The project's name or id.
        #[arg(long)]
        project: String,
    },
    /// Replace a key with a new one of the same name and scopes; prints the new key. With
    /// --overlap-minutes the old key keeps working that long, so a sender can switch over.
    Rotate {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The key's id (see `key list`).
        id: i64,
        /// Minutes the old key keeps working, 0 to 10080 (default 0: it stops at once).
        #[arg(long, default_value_t = 0)]
        overlap_minutes: i64,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The key's id (see `key list`).
        id: i64,
    },
}

pub async fn run(db: &DbArgs, cmd: KeyCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    let app = App::new(store.clone(), AppSettings::default());
    match cmd {
        KeyCommand::Create {
            project,
            name,
            scopes,
            expires_in_days,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let expires_at = expires_in_days
                .map(|days| (app.now() + chrono::TimeDelta::days(days.into())).to_rfc3339());
            let body = json!({"name": name, "scopes": scopes, "expires_at": expires_at});
            let (row, key) = keys::create(&app, project.id, &body)
                .await
                .map_err(one_line)?;
            print_new_key(out, &project, &row, &key, "Created");
        }
        KeyCommand::List { project } => {
            let project = find_project(store.as_ref(), &project).await?;
            let rows = keys::list(&app, project.id).await?;
            let now = app.now();
            out.print(&json!({ "keys": rows }), || listing(&project, &rows, now));
        }
        KeyCommand::Rotate {
            project,
            id,
            overlap_minutes,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let (row, key) = keys::rotate(&app, project.id, id, overlap_minutes)
                .await
                .map_err(one_line)?;
            let verb = match overlap_minutes {
                0 => format!("Rotated key {id} (it stops working now); new"),
                m => format!("Rotated key {id} (it keeps working {m} more minutes); new"),
            };
            print_new_key(out, &project, &row, &key, &verb);
        }
        KeyCommand::Revoke { project, id } => {
            let project = find_project(store.as_ref(), &project).await?;
            let row = keys::revoke(&app, project.id, id).await.map_err(one_line)?;
            out.print(&row, || {
                format!(
                    "Revoked key {} ({:?}) of project {:?}",
                    row.id, row.name, project.name
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct NewKey<'a> {
    #[serde(flatten)]
    row: &'a ProjectKey,
    project_id: i64,
    api_key: &'a str,
}

fn print_new_key(out: &Output, project: &Project, row: &ProjectKey, key: &ApiKey, verb: &str) {
    let value = NewKey {
        row,
        project_id: project.id,
        api_key: key.expose(),
    };
    out.print(&value, || {
        format!(
            "{verb} key {} ({:?}) of project {:?}\n  scopes:   {}\n  expires:  {}\n  API key:  {}\n\n\
             The key is shown only now; store it in your sender's secrets.",
            row.id,
            row.name,
            project.name,
            row.scopes.names().join(", "),
            row.expires_at.map_or("never".into(), |at| at.to_rfc3339()),
            key.expose()
        )
    });
}

fn listing(project: &Project, rows: &[ProjectKey], now: DateTime<Utc>) -> String {
    let mut text = format!(
        "Keys of project {:?}\n{:<6} {:<24} {:<12} {:<24} {:<10} LAST USED",
        project.name, "ID", "NAME", "KEY", "SCOPES", "STATE"
    );
    for k in rows {
        let state = match (k.revoked_at, k.active_at(now)) {
            (Some(_), _) => "revoked",
            (None, false) => "expired",
            (None, true) => "active",
        };
        text.push_str(&format!(
            "\n{:<6} {:<24} {:<12} {:<24} {:<10} {}",
            k.id,
            k.name,
            format!("{}…", k.key_prefix),
            k.scopes.names().join(","),
            state,
            k.last_used_at
                .map_or("never".into(), |at| at.format("%Y-%m-%d %H:%M").to_string())
        ));
    }
    text
}

/// The one active key of a project, for `project rotate-key` (which predates named keys).
pub(crate) async fn only_active_key(app: &App, project: &Project) -> anyhow::Result<ProjectKey> {
    let now = app.now();
    let active: Vec<_> = keys::list(app, project.id)
        .await?
        .into_iter()
        .filter(|k| k.active_at(now))
        .collect();
    match <[_; 1]>::try_from(active) {
        Ok([key]) => Ok(key),
        Err(active) => Err(anyhow!(
            "project {:?} has {} active keys; rotate one by id: callgrade key list --project {} \
             then callgrade key rotate --project {} ID",
            project.name,
            active.len(),
            project.id,
            project.id
        )),
    }
}

fn one_line(e: AppError) -> anyhow::Error {
    match &e {
        AppError::Invalid(errors) if !errors.is_empty() => {
            let first = &errors[0];
            let flag = match first.path.as_str() {
                p if p.starts_with("scopes") => "--scope".to_owned(),
                "expires_at" => "--expires-in-days".to_owned(),
                "overlap_minutes" => "--overlap-minutes".to_owned(),
                p => format!("--{}", p.replace('_', "-")),
            };
            anyhow!("{flag} {}", first.message)
        }
        _ => anyhow!("{e}"),
    }
}
