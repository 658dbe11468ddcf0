//! Administration: projects and their keys, agents, and the dashboard's admin token. The CLI
//! (on the database directly) and the dashboard (signed in) both go through here.

use callgrade_core::{parse_name, parse_project_name, Agent, FieldError, PhoneNumber};
use callgrade_store::{ApiKey, Project, ProjectSettings};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{App, AppError, Result};

/// Where the admin token's hash is kept among the server-wide settings.
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// Creates a project and its first key (returned once; only its hash is stored).
pub async fn create_project(app: &App, name: &str) -> Result<(Project, ApiKey)> {
    let name = parse_project_name(name)
        .map_err(|e| AppError::Invalid(vec![FieldError::new("name", e)]))?;
    Ok(app.store.create_project(&name).await?)
}

/// Changes a project's settings; `None` keeps a value.
pub async fn configure_project(
    app: &App,
    project_id: i64,
    settings: &ProjectSettings,
) -> Result<Project> {
    let problems = settings.problems();
    if !problems.is_empty() {
        return Err(AppError::Invalid(problems));
    }
    Ok(app
        .store
        .update_project_settings(project_id, settings)
        .await?)
}

/// An agent as submitted: a name, and optionally a phone number and a description (its prompt).
#[derive(Debug, Clone, Copy)]
pub struct AgentDraft<'a> {
    pub name: &'a str,
    pub phone_number: Option<&'a str>,
    pub description: Option<&'a str>,
}

struct ValidAgent<'a> {
    name: String,
    phone_number: Option<PhoneNumber>,
    description: Option<&'a str>,
}

impl<'a> AgentDraft<'a> {
    /// Blank phone numbers and descriptions count as absent (forms send them empty).
    fn validate(self) -> Result<ValidAgent<'a>> {
        let mut errors = Vec::new();
        let name = parse_name(self.name)
            .map_err(|e| errors.push(FieldError::new("name", e)))
            .ok();
        let phone_number = match self.phone_number.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => PhoneNumber::parse(p)
                .map_err(|e| errors.push(FieldError::new("phone_number", e)))
                .ok(),
        };
        match name {
            Some(name) if errors.is_empty() => Ok(ValidAgent {
                name,
                phone_number,
                description: self.description.map(str::trim).filter(|d| !d.is_empty()),
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// Creates an agent; its id is the `agent_id` senders put in webhook payloads.
pub async fn create_agent(app: &App, project_id: i64, draft: AgentDraft<'_>) -> Result<Agent> {
    let a = draft.validate()?;
    Ok(app
        .store
        .create_agent(project_id, &a.name, a.phone_number.as_ref(), a.description)
        .await?)
}

/// Replaces an agent's name, phone number and description (its id never changes).
pub async fn update_agent(
    app: &App,
    project_id: i64,
    agent_id: i64,
    draft: AgentDraft<'_>,
) -> Result<Agent> {
    let a = draft.validate()?;
    Ok(app
        .store
        .update_agent(
            project_id,
            agent_id,
            &a.name,
            a.phone_number.as_ref(),
            a.description,
        )
        .await?)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Creates the dashboard's admin token if there is none, or replaces it when `rotate`; returns
/// the new token, or `None` when one exists and was kept (it is shown only when created).
pub async fn issue_admin_token(app: &App, rotate: bool) -> Result<Option<String>> {
    if !rotate && app.store.setting(ADMIN_TOKEN_SETTING).await?.is_some() {
        return Ok(None);
    }
    let secret: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let token = format!("cga_{secret}");
    app.store
        .set_setting(ADMIN_TOKEN_SETTING, &sha256_hex(&token))
        .await?;
    Ok(Some(token))
}

/// The stored hash of the admin token, `None` until one is issued. Dashboard sessions are
/// signed with a key derived from it, so rotating the token signs everyone out.
pub async fn admin_token_hash(app: &App) -> Result<Option<String>> {
    Ok(app.store.setting(ADMIN_TOKEN_SETTING).await?)
}

/// Whether a submitted admin token is the current one (compared in constant time).
pub async fn admin_token_matches(app: &App, token: &str) -> bool {
    let Ok(Some(stored)) = admin_token_hash(app).await else {
        return false;
    };
    bool::from(sha256_hex(token.trim()).as_bytes().ct_eq(stored.as_bytes()))
}
