//! Administration: projects and their keys, agents, and the dashboard's admin token. The CLI
//! (on the database directly) and the dashboard (signed in) both go through here.

use callgrade_core::{parse_name, parse_project_name, Agent, Connector, FieldError, PhoneNumber};
use callgrade_store::{ApiKey, NewAgent, Project, ProjectSettings};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::Value;
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

/// An agent as submitted: a name, and optionally a phone number, a description (its prompt)
/// and a connector (how callgrade calls it to simulate callers).
#[derive(Debug, Clone, Copy)]
pub struct AgentDraft<'a> {
    pub name: &'a str,
    pub phone_number: Option<&'a str>,
    pub description: Option<&'a str>,
    pub connector: ConnectorChange<'a>,
}

/// What an agent's connector becomes.
#[derive(Debug, Clone, Copy, Default)]
pub enum ConnectorChange<'a> {
    /// As it is (none for a new agent).
    #[default]
    Keep,
    Remove,
    /// A connector as submitted; secrets left out or sent as `"***"` keep their stored value.
    Set(&'a Value),
}

impl<'a> AgentDraft<'a> {
    /// Blank phone numbers and descriptions count as absent (forms send them empty).
    fn validate(self, current: Option<&Connector>) -> Result<NewAgent> {
        let mut errors = Vec::new();
        let connector = match self.connector {
            ConnectorChange::Keep => current.cloned(),
            ConnectorChange::Remove => None,
            ConnectorChange::Set(value) => Connector::parse(value, current, "connector")
                .map_err(|e| errors.extend(e))
                .ok(),
        };
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
            Some(name) if errors.is_empty() => Ok(NewAgent {
                name,
                phone_number,
                description: self
                    .description
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                connector,
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// Creates an agent; its id is the `agent_id` senders put in webhook payloads.
pub async fn create_agent(app: &App, project_id: i64, draft: AgentDraft<'_>) -> Result<Agent> {
    let agent = draft.validate(None)?;
    Ok(app.store.create_agent(project_id, &agent).await?)
}

/// Replaces an agent's name, phone number, description and connector (its id never changes).
pub async fn update_agent(
    app: &App,
    project_id: i64,
    agent_id: i64,
    draft: AgentDraft<'_>,
) -> Result<Agent> {
    let (_, current) = existing_agent(app, project_id, agent_id).await?;
    let agent = draft.validate(current.as_ref())?;
    Ok(app.store.update_agent(project_id, agent_id, &agent).await?)
}

/// An agent's fields to change; `None` keeps a field. The REST API's `PATCH`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentPatch<'a> {
    pub name: Option<&'a str>,
    /// `Some(None)` removes it.
    pub phone_number: Option<Option<&'a str>>,
    pub description: Option<Option<&'a str>>,
    pub connector: ConnectorChange<'a>,
}

/// Changes some of an agent's fields.
pub async fn patch_agent(
    app: &App,
    project_id: i64,
    agent_id: i64,
    patch: AgentPatch<'_>,
) -> Result<Agent> {
    let (agent, current) = existing_agent(app, project_id, agent_id).await?;
    let draft = AgentDraft {
        name: patch.name.unwrap_or(&agent.name),
        phone_number: patch.phone_number.unwrap_or(agent.phone_number.as_deref()),
        description: patch.description.unwrap_or(agent.description.as_deref()),
        connector: patch.connector,
    };
    let new = draft.validate(current.as_ref())?;
    Ok(app.store.update_agent(project_id, agent_id, &new).await?)
}

async fn existing_agent(
    app: &App,
    project_id: i64,
    agent_id: i64,
) -> Result<(Agent, Option<Connector>)> {
    app.store
        .agent(project_id, agent_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no agent with id {agent_id} in this project")))
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
