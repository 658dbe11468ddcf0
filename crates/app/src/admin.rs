//! Administration: projects and their keys, agents, and the dashboard's admin token. The CLI
//! (on the database directly) and the dashboard (signed in) both go through here.

use callgrade_core::{
    parse_name, parse_project_name, Agent, Connector, FieldError, PhoneNumber, Vendor,
};
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
    /// The ids vendors know it by; `None` keeps them (none for a new agent).
    pub external_ids: Option<&'a [String]>,
}

/// The most vendor ids one agent keeps.
pub const MAX_EXTERNAL_IDS: usize = 20;

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
    fn validate(self, current: Option<&Connector>, current_ids: &[String]) -> Result<NewAgent> {
        let mut errors = Vec::new();
        let external_ids = match self.external_ids {
            None => current_ids.to_vec(),
            Some(ids) => external_ids(ids, &mut errors),
        };
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
                external_ids,
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// Vendor ids as given: trimmed, each 1–255 characters, none twice.
fn external_ids(ids: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if ids.len() > MAX_EXTERNAL_IDS {
        errors.push(FieldError::new(
            "external_ids",
            format!(
                "holds {} ids; at most {MAX_EXTERNAL_IDS} are kept per agent",
                ids.len()
            ),
        ));
    }
    let mut kept: Vec<String> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = id.trim();
        let chars = id.chars().count();
        if !(1..=callgrade_core::CALL_ID_MAX_CHARS).contains(&chars) {
            errors.push(FieldError::new(
                format!("external_ids[{i}]"),
                "must be 1–255 characters: the id a vendor gives this agent (a Vapi assistant id, a Retell or ElevenLabs agent id)",
            ));
        } else if kept.iter().any(|k| k == id) {
            errors.push(FieldError::new(
                format!("external_ids[{i}]"),
                format!("{id:?} is listed twice"),
            ));
        } else {
            kept.push(id.to_owned());
        }
    }
    kept
}

/// Refuses vendor ids another agent of the project already has: a vendor's call must name one
/// agent.
async fn check_external_ids_free(
    app: &App,
    project_id: i64,
    agent_id: Option<i64>,
    new: &NewAgent,
) -> Result<()> {
    for (i, id) in new.external_ids.iter().enumerate() {
        if let Some(other) = app.store.agent_by_external_id(project_id, id).await? {
            if Some(other) != agent_id {
                return Err(AppError::AlreadyExists(format!(
                    "external_ids[{i}]: {id:?} is already agent {other}'s; a vendor id names one agent"
                )));
            }
        }
    }
    Ok(())
}

/// Creates an agent; its id is the `agent_id` senders put in webhook payloads.
pub async fn create_agent(app: &App, project_id: i64, draft: AgentDraft<'_>) -> Result<Agent> {
    let agent = draft.validate(None, &[])?;
    check_external_ids_free(app, project_id, None, &agent).await?;
    Ok(app.store.create_agent(project_id, &agent).await?)
}

/// Replaces an agent's name, phone number, description and connector (its id never changes).
pub async fn update_agent(
    app: &App,
    project_id: i64,
    agent_id: i64,
    draft: AgentDraft<'_>,
) -> Result<Agent> {
    let (existing, current) = existing_agent(app, project_id, agent_id).await?;
    let agent = draft.validate(current.as_ref(), &existing.external_ids)?;
    check_external_ids_free(app, project_id, Some(agent_id), &agent).await?;
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
    pub external_ids: Option<&'a [String]>,
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
        external_ids: patch.external_ids,
    };
    let new = draft.validate(current.as_ref(), &agent.external_ids)?;
    check_external_ids_free(app, project_id, Some(agent_id), &new).await?;
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

/// The longest vendor secret taken (a Retell API key or an ElevenLabs secret is far shorter).
pub const VENDOR_SECRET_MAX_CHARS: usize = 512;

/// The vendor a path names, or a clear refusal.
pub fn vendor(name: &str) -> Result<Vendor> {
    Vendor::parse(name).ok_or_else(|| {
        AppError::not_found(format!(
            "no vendor {name:?}: secrets are kept for vapi, retell and elevenlabs"
        ))
    })
}

/// Saves the secret a vendor signs this project's webhooks with (write-only: it is never
/// shown again). Vapi's is the server URL secret, Retell's the API key with the webhook
/// badge, ElevenLabs' the webhook's HMAC secret.
pub async fn save_vendor_secret(
    app: &App,
    project_id: i64,
    vendor: Vendor,
    secret: &str,
) -> Result<()> {
    let secret = secret.trim();
    let chars = secret.chars().count();
    let problem = if chars == 0 {
        Some("must not be empty".to_owned())
    } else if chars > VENDOR_SECRET_MAX_CHARS {
        Some(format!(
            "must be at most {VENDOR_SECRET_MAX_CHARS} characters"
        ))
    } else if secret.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(AppError::Invalid(vec![FieldError::new("secret", problem)]));
    }
    app.store
        .set_vendor_secret(project_id, vendor, Some(secret))
        .await?;
    Ok(())
}

/// Forgets a vendor's secret; its per-project webhook URL then refuses every request.
pub async fn remove_vendor_secret(app: &App, project_id: i64, vendor: Vendor) -> Result<()> {
    if !app
        .store
        .set_vendor_secret(project_id, vendor, None)
        .await?
    {
        return Err(AppError::not_found(format!(
            "no {} secret is saved for this project",
            vendor.as_str()
        )));
    }
    Ok(())
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
