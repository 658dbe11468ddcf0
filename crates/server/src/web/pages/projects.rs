//! Projects: the list, one project with its agents, settings and keys.

use super::*;
use callgrade_core::access::Scope;
use callgrade_core::privacy::{PhoneNumbers, RedactionMode, RedactionPolicy};
use callgrade_store::ProjectKey;

pub async fn home(State(state): State<AppState>, admin: Admin) -> Page {
    let projects = state.app.store.list_projects().await?;
    Ok(page("Projects", Some(&admin), None, html! {
        h1 { "Projects" }
        @if projects.is_empty() {
            div.empty { p { "No projects yet. A project is an environment (staging, production…) with its own webhook URL and API key." } }
        } @else {
            table {
                tr { th { "Name" } th { "Webhook URL" } th { "Created" } }
                @for p in &projects {
                    tr {
                        td { a href={ "/projects/" (p.id) } { (p.name) } }
                        td { code { (project_webhook_url(&state.settings.public_url, p.id)) } }
                        td { (when(p.created_at)) }
                    }
                }
            }
        }
        h2 { "New project" }
        form.card method="post" action="/projects" {
            (csrf(&admin))
            input type="text" name="name" placeholder="staging" required;
            " "
            button type="submit" { "Create project" }
        }
    }).into_response())
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
}

pub async fn create_project(
    State(state): State<AppState>,
    admin: Admin,
    Form(form): Form<NameForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let (project, key) = admin::create_project(&state.app, &form.name).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Project created").into_response())
}

/// Shows a key once, with the URLs that use it.
pub(super) fn key_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    key: &str,
    title: &str,
) -> Html<String> {
    page(
        title,
        Some(admin),
        Some(project),
        html! {
            h1 { (title) ": " (project.name) }
            div.card {
                p.warn { "This API key is shown only now. Store it in your sender's secrets." }
                div.copy { code #api-key { (key) } button.secondary type="button" data-copy=(key) { "Copy" } }
            }
            (webhook_urls(state, project))
            p { a href={ "/projects/" (project.id) } { "Go to the project" } }
        },
    )
}

pub(super) fn webhook_urls(state: &AppState, project: &Project) -> Markup {
    let own = project_webhook_url(&state.settings.public_url, project.id);
    let cekura = cekura_webhook_url(&state.settings.public_url);
    html! {
        div.card {
            h2 { "Webhook" }
            p { "Send each finished call's transcript here, with the header " code { "X-CEKURA-API-KEY" } "." }
            div.copy { span.muted { "Project URL" } code { (own) } button.secondary type="button" data-copy=(own) { "Copy" } }
            div.copy { span.muted { "Cekura's path" } code { (cekura) } button.secondary type="button" data-copy=(cekura) { "Copy" } }
        }
    }
}

pub(super) fn curl_example(state: &AppState, project: &Project, agent_id: i64) -> String {
    format!(
        "curl -X POST {} \\\n  -H \"X-CEKURA-API-KEY: $CALLGRADE_KEY\" -H \"Content-Type: application/json\" \\\n  -d '{{\"agent_id\": {agent_id}, \"calls\": [{{\"id\": \"first-call\", \"startedAt\": \"2025-10-15T09:22:21Z\", \"endedAt\": \"2025-10-15T09:23:30Z\", \"messages\": [{{\"role\": \"bot\", \"content\": \"Hi, how can I help?\", \"start_time\": 0.4, \"end_time\": 1.9}}, {{\"role\": \"user\", \"content\": \"I have a billing question.\", \"start_time\": 2.6, \"end_time\": 4.0}}]}}]}}'",
        project_webhook_url(&state.settings.public_url, project.id)
    )
}

/// The project's set-up: its webhook URLs, key and settings, and its agents.
pub async fn setup(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Page {
    let project = load_project(&state, &id).await?;
    Ok(project_page(&state, &admin, &project, None)
        .await?
        .into_response())
}

/// How to send the first call, for a project that has none: the landing page and the set-up
/// page both show it.
pub(super) fn first_call(
    state: &AppState,
    project: &Project,
    agents: &[callgrade_core::Agent],
) -> Markup {
    let example_agent = agents.first().map_or(1, |a| a.id);
    html! {
        div.empty {
            h2 { "Send your first call" }
            @if agents.is_empty() {
                p { "Create an agent on the " a href={ "/projects/" (project.id) "/setup" } { "set-up page" }
                    " first; its id is the " code { "agent_id" } " of the payload." }
            }
            p { "With your project key in " code { "CALLGRADE_KEY" } ":" }
            pre #first-call { (curl_example(state, project, example_agent)) }
        }
        (webhook_urls(state, project))
    }
}

/// What a connector looks like, for an empty editor.
const CONNECTOR_EXAMPLE: &str = r#"{"kind": "http_turn", "url": "https://agent.example.com/turn", "headers": {"Authorization": "Bearer …"}}"#;

/// An agent form the app refused: which agent's (`None`: the new one), what was typed, why.
struct Refused<'a> {
    agent_id: Option<i64>,
    form: &'a AgentForm,
    problems: Vec<String>,
}

/// What an agent form shows: the stored agent, or what was typed into a refused form.
struct AgentValues<'a> {
    name: &'a str,
    phone_number: &'a str,
    description: &'a str,
    connector_kind: &'a str,
    connector: String,
    external_ids: String,
}

impl<'a> AgentValues<'a> {
    fn of_agent(a: &'a callgrade_core::Agent) -> Self {
        Self {
            name: &a.name,
            phone_number: a.phone_number.as_deref().unwrap_or(""),
            description: a.description.as_deref().unwrap_or(""),
            connector_kind: a.connector.as_ref().map_or("none", |c| c.kind.as_str()),
            // The view, secrets as "***": sent back unchanged, they keep their stored value.
            connector: a
                .connector
                .as_ref()
                .and_then(|c| serde_json::to_string_pretty(c).ok())
                .unwrap_or_default(),
            external_ids: a.external_ids.join(", "),
        }
    }

    fn of_form(f: &'a AgentForm) -> Self {
        Self {
            name: &f.name,
            phone_number: &f.phone_number,
            description: &f.description,
            connector_kind: f.connector_kind.as_deref().unwrap_or("none"),
            connector: f.connector.clone(),
            external_ids: f.external_ids.clone().unwrap_or_default(),
        }
    }
}

/// The inputs of an agent form, the connector editor folded under them.
fn agent_fields(v: &AgentValues<'_>, problems: &[String]) -> Markup {
    html! {
        @if !problems.is_empty() {
            ul.errors { @for p in problems { li { (p) } } }
        }
        input type="text" name="name" placeholder="support-bot" value=(v.name) required;
        " " input type="text" name="phone_number" placeholder="+14155551234 (optional)" value=(v.phone_number);
        " " input type="text" name="description" size="40" placeholder="what the agent is for (optional)" value=(v.description);
        " " input type="text" name="external_ids" size="30" placeholder="vendor ids, comma-separated (optional)"
            title="The ids Vapi (assistant), Retell or ElevenLabs (agent) know this agent by: their webhooks find the agent by them"
            value=(v.external_ids);
        details.connector open[!problems.is_empty()] {
            summary { "Connector: " (v.connector_kind) }
            p.muted { "How callgrade calls the agent to play simulated callers. Secrets read back as "
                code { "***" } "; left as they are, they keep their stored value." }
            label { "Kind " select name="connector_kind" {
                @for kind in std::iter::once("none").chain(callgrade_core::Connector::KINDS) {
                    option value=(kind) selected[v.connector_kind == kind] { (kind) }
                }
            } }
            br;
            textarea name="connector" rows="6" cols="80" placeholder=(CONNECTOR_EXAMPLE) { (v.connector) }
        }
    }
}

async fn project_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    refused: Option<&Refused<'_>>,
) -> Result<Html<String>, WebError> {
    let agents = state.app.store.list_agents(project.id).await?;
    let keys = callgrade_app::keys::list(&state.app, project.id).await?;
    let has_calls = callgrade_app::calls::any(&state.app, project.id).await?;
    // A refused form shows what was typed and why, in place of the stored values.
    let refused_for = |agent_id: Option<i64>| refused.filter(|r| r.agent_id == agent_id);
    let new_agent = match refused_for(None) {
        Some(r) => (AgentValues::of_form(r.form), r.problems.as_slice()),
        None => (
            AgentValues {
                name: "",
                phone_number: "",
                description: "",
                connector_kind: "none",
                connector: String::new(),
                external_ids: String::new(),
            },
            &[][..],
        ),
    };
    Ok(page(
        &project.name,
        Some(admin),
        Some(project),
        html! {
            h1 { (project.name) " · set-up" }
            @if !has_calls { (first_call(state, project, &agents)) }
            @else { (webhook_urls(state, project)) }
            (keys_card(admin, project, &keys, state.app.now()))
            div.card {
                h2 { "Settings" }
                form method="post" action={ "/projects/" (project.id) "/settings" } {
                    (csrf(admin))
                    label { "Listening window (s) " input type="number" name="listening_window_seconds" min="1" max="86400" value=(project.listening_window_seconds); }
                    " "
                    label { "Run deadline (s) " input type="number" name="run_deadline_seconds" min="60" max="604800" value=(project.run_deadline_seconds); }
                    " "
                    @let policy = project.redaction;
                    label { "PII redaction "
                        select name="redaction_mode" {
                            option value="off" selected[policy.mode == RedactionMode::Off] { "off" }
                            option value="mask" selected[policy.mode == RedactionMode::Mask] { "mask (<EMAIL>…)" }
                            option value="hash" selected[policy.mode == RedactionMode::Hash] { "keyed hash" }
                        }
                    }
                    " "
                    label { "Caller numbers "
                        select name="phone_numbers" {
                            option value="keep" selected[policy.phone_numbers == PhoneNumbers::Keep] { "keep (run matching)" }
                            option value="drop" selected[policy.phone_numbers == PhoneNumbers::Drop] { "drop" }
                        }
                    }
                    p.muted { "Redaction replaces emails, phone numbers, cards, SSNs, IBANs, IP addresses and dates of birth before a call is stored; not names or street addresses (docs/privacy.md)." }
                    " " button.secondary type="submit" { "Save settings" }
                }
            }
            h2 { "Agents" }
            @if agents.is_empty() {
                p.muted { "No agents yet." }
            } @else {
                table #agents {
                    tr { th { "agent_id" } th { "Connector" } th { "Name, phone, description, vendor ids and connector (edit and save)" } }
                    @for a in &agents {
                        @let (values, problems) = match refused_for(Some(a.id)) {
                            Some(r) => (AgentValues::of_form(r.form), r.problems.as_slice()),
                            None => (AgentValues::of_agent(a), &[][..]),
                        };
                        tr {
                            td { code { (a.id) } }
                            td { @match &a.connector { Some(c) => { code { (c.kind) } }, None => { span.muted { "none" } } } }
                            td {
                                form method="post" action={ "/projects/" (project.id) "/agents/" (a.id) } {
                                    (csrf(admin))
                                    (agent_fields(&values, problems))
                                    button.secondary type="submit" { "Save" }
                                }
                            }
                        }
                    }
                }
            }
            form.card #new-agent method="post" action={ "/projects/" (project.id) "/agents" } {
                (csrf(admin))
                (agent_fields(&new_agent.0, new_agent.1))
                button type="submit" { "Create agent" }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    description: String,
    /// `none`, `http_turn` or `openai_chat`; a form without the editor keeps the connector.
    connector_kind: Option<String>,
    /// The connector as JSON; `kind` may be left out (the select says it).
    #[serde(default)]
    connector: String,
    /// The vendors' ids of the agent, separated by commas or spaces; a form without the field
    /// keeps them.
    external_ids: Option<String>,
}

/// What the form asks of the connector, its JSON parsed.
enum ConnectorWanted {
    Keep,
    Remove,
    Set(Value),
}

impl AgentForm {
    fn connector_wanted(&self) -> Result<ConnectorWanted, Vec<FieldError>> {
        let kind = match self.connector_kind.as_deref().map(str::trim) {
            None => return Ok(ConnectorWanted::Keep),
            Some("" | "none") => return Ok(ConnectorWanted::Remove),
            Some(kind) => kind,
        };
        let text = self.connector.trim();
        if text.is_empty() {
            return Err(vec![FieldError::new(
                "connector",
                format!("give the {kind} connector as JSON, or choose the kind none"),
            )]);
        }
        let mut value: Value = serde_json::from_str(text).map_err(|e| {
            vec![FieldError::new(
                "connector",
                format!("is not valid JSON: {e}"),
            )]
        })?;
        if let Some(object) = value.as_object_mut() {
            match object.get("kind") {
                None => {
                    object.insert("kind".into(), Value::String(kind.into()));
                }
                Some(said) if said.as_str() != Some(kind) => {
                    return Err(vec![FieldError::new(
                        "connector.kind",
                        format!("is {said} but the kind chosen is {kind:?}: make them agree"),
                    )])
                }
                Some(_) => {}
            }
        }
        // Anything else that is wrong (not an object, unknown fields, bad URLs) the app says.
        Ok(ConnectorWanted::Set(value))
    }

    /// The vendor ids typed, `None` when the form has no such field.
    fn external_ids(&self) -> Option<Vec<String>> {
        self.external_ids.as_ref().map(|text| {
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    fn draft<'a>(
        &'a self,
        connector: &'a ConnectorWanted,
        external_ids: Option<&'a [String]>,
    ) -> admin::AgentDraft<'a> {
        admin::AgentDraft {
            name: &self.name,
            phone_number: Some(&self.phone_number),
            description: Some(&self.description),
            connector: match connector {
                ConnectorWanted::Keep => admin::ConnectorChange::Keep,
                ConnectorWanted::Remove => admin::ConnectorChange::Remove,
                ConnectorWanted::Set(value) => admin::ConnectorChange::Set(value),
            },
            external_ids,
        }
    }
}

/// Back to the project once saved; problems with the input back to the form, with what was
/// typed and each problem's path.
async fn agent_saved(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    agent_id: Option<i64>,
    form: &AgentForm,
    outcome: Result<(), AppError>,
) -> Page {
    match outcome {
        Ok(()) => Ok(see_other(&format!("/projects/{}/setup", project.id))),
        // What was typed stays on the page beside why (a vendor id another agent has is 409).
        Err(e @ (AppError::Invalid(_) | AppError::Conflict(_) | AppError::AlreadyExists(_))) => {
            let (status, message) = explain(&e);
            let problems = match e.problems() {
                none if none.is_empty() => vec![message],
                some => some,
            };
            let refused = Refused {
                agent_id,
                form,
                problems,
            };
            let html = project_page(state, admin, project, Some(&refused)).await?;
            Ok((status, html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<AgentForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let ids = form.external_ids();
    let outcome = match form.connector_wanted() {
        Err(errors) => Err(AppError::Invalid(errors)),
        Ok(connector) => {
            let draft = form.draft(&connector, ids.as_deref());
            admin::create_agent(&state.app, project.id, draft)
                .await
                .map(drop)
        }
    };
    agent_saved(&state, &admin, &project, None, &form, outcome).await
}

pub async fn update_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, agent_id)): Path<(String, String)>,
    Form(form): Form<AgentForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let agent_id: i64 = agent_id
        .parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such agent"))?;
    let ids = form.external_ids();
    let outcome = match form.connector_wanted() {
        Err(errors) => Err(AppError::Invalid(errors)),
        Ok(connector) => {
            let draft = form.draft(&connector, ids.as_deref());
            admin::update_agent(&state.app, project.id, agent_id, draft)
                .await
                .map(drop)
        }
    };
    agent_saved(&state, &admin, &project, Some(agent_id), &form, outcome).await
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    listening_window_seconds: i64,
    run_deadline_seconds: i64,
    redaction_mode: Option<RedactionMode>,
    phone_numbers: Option<PhoneNumbers>,
}

pub async fn update_settings(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let settings = callgrade_store::ProjectSettings {
        listening_window_seconds: Some(form.listening_window_seconds),
        run_deadline_seconds: Some(form.run_deadline_seconds),
        redaction: form.redaction_mode.map(|mode| RedactionPolicy {
            mode,
            phone_numbers: form.phone_numbers.unwrap_or_default(),
        }),
    };
    admin::configure_project(&state.app, project.id, &settings).await?;
    Ok(see_other(&format!("/projects/{}/setup", project.id)))
}

/// The project's keys: what each may do, when it was last used, rotation and revocation, and a
/// form for a new one (an `ingest` key is what a sender should hold).
fn keys_card(admin: &Admin, project: &Project, keys: &[ProjectKey], now: DateTime<Utc>) -> Markup {
    let base = format!("/projects/{}/keys", project.id);
    html! {
        div.card #keys {
            h2 { "API keys" }
            p.muted { "Give a sender a key with only " code { "ingest" } ": it can post calls and read nothing. "
                code { "read" } " reads calls, runs and metrics; " code { "write" } " also changes them; "
                code { "admin" } " also manages keys and vendor secrets." }
            table {
                tr { th { "Name" } th { "Key" } th { "Scopes" } th { "Created" } th { "Expires" } th { "Last used" } th { "" } }
                @for k in keys {
                    @let active = k.active_at(now);
                    tr.muted[!active] {
                        td { (k.name) }
                        td { code { (k.key_prefix) "…" } }
                        td { (k.scopes.names().join(", ")) }
                        td { (when(k.created_at)) }
                        td {
                            @if let Some(at) = k.revoked_at { "revoked " (when(at)) }
                            @else if let Some(at) = k.expires_at { (when(at)) @if !active { " (expired)" } }
                            @else { "never" }
                        }
                        td { (k.last_used_at.map(when).unwrap_or_else(|| "never".into())) }
                        td {
                            @if active {
                                form.inline method="post" action={ (base) "/" (k.id) "/rotate" } {
                                    (csrf(admin))
                                    select name="overlap_minutes" aria-label="Old key keeps working for" {
                                        option value="0" { "old key stops now" }
                                        option value="60" { "old key works 1 h more" }
                                        option value="1440" { "old key works 24 h more" }
                                    }
                                    " " button.secondary type="submit" { "Rotate" }
                                }
                                " "
                                form.inline method="post" action={ (base) "/" (k.id) "/revoke" } {
                                    (csrf(admin))
                                    button.secondary type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action=(base) {
                (csrf(admin))
                label { "Name " input type="text" name="name" placeholder="production sender" required maxlength="100"; }
                " "
                @for scope in Scope::ALL {
                    label { input type="checkbox" name="scope" value=(scope.as_str()) checked[scope == Scope::Ingest]; " " (scope.as_str()) }
                    " "
                }
                label { "Expires in (days) " input type="number" name="expires_in_days" min="1" max="3650" placeholder="never"; }
                " " button type="submit" { "Create key" }
            }
        }
    }
}

/// A new key from the dashboard's form: its fields repeat (`scope` once per box ticked), so
/// the form is read as pairs.
pub async fn create_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Page {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    check_csrf(&admin, field("_csrf").unwrap_or_default())?;
    let project = load_project(&state, &id).await?;
    let scopes: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let expires_at = match field("expires_in_days").filter(|d| !d.is_empty()) {
        None => Value::Null,
        Some(days) => match days.parse::<i64>() {
            Ok(days @ 1..=3650) => {
                Value::String((state.app.now() + chrono::TimeDelta::days(days)).to_rfc3339())
            }
            _ => {
                return Err(AppError::Invalid(vec![FieldError::new(
                    "expires_in_days",
                    "a whole number of days from 1 to 3650, or empty for never",
                )])
                .into())
            }
        },
    };
    let body = serde_json::json!({
        "name": field("name").unwrap_or_default(),
        "scopes": scopes,
        "expires_at": expires_at,
    });
    let (_, key) = callgrade_app::keys::create(&state.app, project.id, &body).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Key created").into_response())
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    overlap_minutes: i64,
}

pub async fn rotate_key(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, key_id)): Path<(String, i64)>,
    Form(form): Form<RotateForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let (_, key) =
        callgrade_app::keys::rotate(&state.app, project.id, key_id, form.overlap_minutes).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Key rotated").into_response())
}

pub async fn revoke_key(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, key_id)): Path<(String, i64)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    callgrade_app::keys::revoke(&state.app, project.id, key_id).await?;
    Ok(see_other(&format!("/projects/{}/setup#keys", project.id)))
}
