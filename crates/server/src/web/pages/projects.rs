//! Projects: the list, one project with its agents, settings and key.

use super::*;

pub async fn home(State(state): State<AppState>, admin: Admin) -> Page {
    let projects = state.app.store.list_projects().await?;
    Ok(page("Projects", Some(&admin), None, html! {
        h1 { "Projects" }
        @if projects.is_empty() {
            div.empty { p { "No projects yet. A project is an environment (staging, production…) with its own webhook URL and API key." } }
        } @else {
            table {
                tr { th { "Name" } th { "Webhook URL" } th { "Key" } th { "Created" } }
                @for p in &projects {
                    tr {
                        td { a href={ "/projects/" (p.id) } { (p.name) } }
                        td { code { (project_webhook_url(&state.settings.public_url, p.id)) } }
                        td { code { (p.key_prefix) "…" } }
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

pub async fn project(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Page {
    let project = load_project(&state, &id).await?;
    let agents = state.app.store.list_agents(project.id).await?;
    let has_calls = !state
        .app
        .store
        .list_calls(
            project.id,
            &CallFilter {
                limit: 1,
                ..Default::default()
            },
        )
        .await?
        .data
        .is_empty();
    let example_agent = agents.first().map_or(1, |a| a.id);
    Ok(page(&project.name, Some(&admin), Some(&project), html! {
        h1 { (project.name) }
        @if !has_calls {
            div.empty {
                h2 { "Send your first call" }
                @if agents.is_empty() { p { "Create an agent below first; its id is the " code { "agent_id" } " of the payload." } }
                p { "With your project key in " code { "CALLGRADE_KEY" } ":" }
                pre #first-call { (curl_example(&state, &project, example_agent)) }
            }
        }
        (webhook_urls(&state, &project))
        div.card {
            h2 { "API key" }
            p { "Current key: " code { (project.key_prefix) "…" } ". Rotating makes the old key stop working at once." }
            form method="post" action={ "/projects/" (project.id) "/rotate-key" } {
                (csrf(&admin))
                button.secondary type="submit" { "Rotate the key" }
            }
            form method="post" action={ "/projects/" (project.id) "/settings" } {
                (csrf(&admin))
                label { "Listening window (s) " input type="number" name="listening_window_seconds" min="1" max="86400" value=(project.listening_window_seconds); }
                " "
                label { "Run deadline (s) " input type="number" name="run_deadline_seconds" min="60" max="604800" value=(project.run_deadline_seconds); }
                " " button.secondary type="submit" { "Save settings" }
            }
        }
        h2 { "Agents" }
        @if agents.is_empty() {
            p.muted { "No agents yet." }
        } @else {
            table {
                tr { th { "agent_id" } th { "Name, phone and description (edit and save)" } }
                @for a in &agents {
                    tr {
                        td { code { (a.id) } }
                        td {
                            form method="post" action={ "/projects/" (project.id) "/agents/" (a.id) } {
                                (csrf(&admin))
                                input type="text" name="name" value=(a.name) required;
                                " " input type="text" name="phone_number" placeholder="+14155551234" value=[a.phone_number.as_deref()];
                                " " input type="text" name="description" size="40" value=[a.description.as_deref()];
                                " " button.secondary type="submit" { "Save" }
                            }
                        }
                    }
                }
            }
        }
        form.card method="post" action={ "/projects/" (project.id) "/agents" } {
            (csrf(&admin))
            input type="text" name="name" placeholder="support-bot" required;
            " "
            input type="text" name="phone_number" placeholder="+14155551234 (optional)";
            " "
            input type="text" name="description" placeholder="what the agent is for (optional)";
            " "
            button type="submit" { "Create agent" }
        }
    }).into_response())
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
}

pub async fn create_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<AgentForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    admin::create_agent(&state.app, project.id, form.draft()).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

impl AgentForm {
    fn draft(&self) -> admin::AgentDraft<'_> {
        admin::AgentDraft {
            name: &self.name,
            phone_number: Some(&self.phone_number),
            description: Some(&self.description),
            connector: admin::ConnectorChange::Keep,
        }
    }
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
    admin::update_agent(&state.app, project.id, agent_id, form.draft()).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    listening_window_seconds: i64,
    run_deadline_seconds: i64,
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
    };
    admin::configure_project(&state.app, project.id, &settings).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

pub async fn rotate_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let key = state.app.store.rotate_key(project.id).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Key rotated").into_response())
}
