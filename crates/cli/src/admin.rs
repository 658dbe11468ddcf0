//! Project and agent administration. Works on the database directly, also while the server runs.

use anyhow::{anyhow, Context};
use callgrade_app::admin::{self, AgentDraft, AgentPatch, ConnectorChange};
use callgrade_app::{App, AppError, AppSettings};
use callgrade_core::VoiceSettings;
use callgrade_server::{cekura_webhook_url, project_webhook_url};
use callgrade_store::prelude::*;
use callgrade_store::{JudgeSettingsPatch, Project, ProjectSettings};
use clap::Subcommand;
use serde::Serialize;
use std::process::ExitCode;

use crate::output::Output;
use crate::DbArgs;

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project; prints its webhook URL and API key (the key is shown only now).
    Create {
        /// A name such as "staging" or "production" (not only digits).
        name: String,
    },
    /// List projects.
    List,
    /// Change a project's settings.
    Configure {
        /// The project's name or id.
        project: String,
        /// Seconds after a test call ends during which its transcript still matches (default 300).
        #[arg(long)]
        listening_window: Option<i64>,
        /// Seconds after creation when a run with no reported call end times out (default 1800).
        #[arg(long)]
        run_deadline: Option<i64>,
    },
    /// Set where the project's judge metrics send their prompts (an OpenAI-compatible API).
    Judge {
        /// The project's name or id.
        project: String,
        /// The API's base URL, e.g. https://api.openai.com/v1 or http://localhost:11434/v1.
        #[arg(long)]
        base_url: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// The name of an environment variable that holds the API key (keys stay out of
        /// shell history).
        #[arg(long)]
        api_key_env: Option<String>,
        /// Judge requests in flight at once for this project.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: Option<u32>,
    },
    /// Set the project's simulator endpoint: the LLM that plays simulated callers.
    Simulator {
        /// The project's name or id.
        project: String,
        /// The API's base URL, e.g. https://api.openai.com/v1 or http://localhost:11434/v1.
        #[arg(long)]
        base_url: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// The name of an environment variable that holds the API key.
        #[arg(long)]
        api_key_env: Option<String>,
        /// Simulated runs of this project in flight at once (default 4).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
        concurrency: Option<u32>,
        /// Caller and agent LLM tokens one run may spend (default 200000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1000..=10_000_000))]
        token_budget: Option<u64>,
        #[command(flatten)]
        voice: VoiceFlags,
    },
    /// Replace a project's API key when it has one active key (`callgrade key rotate` picks
    /// one of several); the old key stops working at once unless --overlap-minutes is given.
    RotateKey {
        /// The project's name or id.
        project: String,
        /// Minutes the old key keeps working, 0 to 10080.
        #[arg(long, default_value_t = 0)]
        overlap_minutes: i64,
    },
    /// Save (or with --clear, remove) the secret a vendor signs this project's webhooks with:
    /// Vapi's server URL secret, Retell's API key with the webhook badge, or ElevenLabs'
    /// webhook HMAC secret. It is never shown again.
    VendorSecret {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        #[arg(long, value_parser = ["vapi", "retell", "elevenlabs"])]
        vendor: String,
        /// The name of an environment variable that holds the secret (secrets stay out of
        /// shell history).
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        secret_env: Option<String>,
        /// Remove the saved secret: the per-project URL then refuses every request.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Create an agent; its id is the `agent_id` senders put in webhook payloads.
    Create {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// The agent's phone number, `+` then digits (at most 15 characters).
        #[arg(long)]
        phone_number: Option<String>,
        /// What the agent is for; its prompt, for judges.
        #[arg(long)]
        description: Option<String>,
        /// How callgrade calls the agent to simulate callers, as JSON, e.g.
        /// '{"kind": "http_turn", "url": "http://localhost:9000/turn"}' (see docs/simulation.md).
        #[arg(long, value_parser = parse_json_object)]
        connector: Option<serde_json::Value>,
        /// An id a vendor knows the agent by (a Vapi assistant id, a Retell or ElevenLabs
        /// agent id), so that vendor's webhooks find it; repeat for several.
        #[arg(long = "external-id")]
        external_ids: Vec<String>,
    },
    /// Change an agent: the fields given are replaced, the rest kept.
    Update {
        /// The project's name or id.
        #[arg(long)]
        project: String,
        /// The agent's id.
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        phone_number: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A new connector as JSON ("***" keeps a stored secret), or `none` to remove it.
        #[arg(long, value_parser = parse_connector_arg)]
        connector: Option<serde_json::Value>,
        /// Replaces the vendor ids with these (repeat for several).
        #[arg(long = "external-id", conflicts_with = "no_external_ids")]
        external_ids: Vec<String>,
        /// Removes every vendor id.
        #[arg(long)]
        no_external_ids: bool,
    },
    /// List a project's agents.
    List {
        /// The project's name or id.
        #[arg(long)]
        project: String,
    },
}

#[derive(Serialize)]
struct ProjectWithKey<'a> {
    id: i64,
    name: &'a str,
    webhook_url: String,
    cekura_webhook_url: String,
    api_key: &'a str,
}

#[derive(Serialize)]
struct ProjectListing {
    projects: Vec<ProjectRow>,
}

#[derive(Serialize)]
struct ProjectRow {
    #[serde(flatten)]
    project: Project,
    webhook_url: String,
}

pub async fn project(db: &DbArgs, cmd: ProjectCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    let webhook_url = |id: i64| project_webhook_url(&db.public_url, id);
    let cekura_url = cekura_webhook_url(&db.public_url);
    match cmd {
        ProjectCommand::Create { name } => {
            let app = App::new(store.clone(), AppSettings::default());
            let (project, key) = admin::create_project(&app, &name)
                .await
                .map_err(|e| flag_error(e, |_| "project name".into()))?;
            print_key(
                out,
                &project,
                key.expose(),
                webhook_url(project.id),
                &cekura_url,
                "Created",
            );
        }
        ProjectCommand::List => {
            let projects = store.list_projects().await?;
            let listing = ProjectListing {
                projects: projects
                    .into_iter()
                    .map(|p| ProjectRow {
                        webhook_url: webhook_url(p.id),
                        project: p,
                    })
                    .collect(),
            };
            out.print(&listing, || {
                if listing.projects.is_empty() {
                    return "No projects yet. Create one: callgrade project create NAME".into();
                }
                let mut text = format!("{:<6} {:<24} WEBHOOK URL", "ID", "NAME");
                for row in &listing.projects {
                    text.push_str(&format!(
                        "\n{:<6} {:<24} {}",
                        row.project.id, row.project.name, row.webhook_url
                    ));
                }
                text
            });
        }
        ProjectCommand::Configure {
            project,
            listening_window,
            run_deadline,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let settings = ProjectSettings {
                listening_window_seconds: listening_window,
                run_deadline_seconds: run_deadline,
                redaction: None,
            };
            let app = App::new(store.clone(), AppSettings::default());
            let project = admin::configure_project(&app, project.id, &settings)
                .await
                .map_err(|e| {
                    flag_error(e, |path| {
                        format!("--{}:", path.trim_end_matches("_seconds").replace('_', "-"))
                    })
                })?;
            out.print(&project, || {
                format!(
                    "Project {:?}: listening window {} s, run deadline {} s",
                    project.name, project.listening_window_seconds, project.run_deadline_seconds
                )
            });
        }
        ProjectCommand::Judge {
            project,
            base_url,
            model,
            api_key_env,
            concurrency,
        } => {
            let api_key = api_key_env
                .map(|var| {
                    std::env::var(&var)
                        .with_context(|| format!("--api-key-env names {var}, which is not set"))
                })
                .transpose()?;
            let patch = callgrade_store::JudgeSettingsPatch {
                base_url,
                model,
                api_key,
                concurrency,
            };
            return set_judge(db, &project, patch, out).await;
        }
        ProjectCommand::Simulator {
            project,
            base_url,
            model,
            api_key_env,
            concurrency,
            token_budget,
            voice,
        } => {
            let voice = voice.patch()?;
            let api_key = api_key_env
                .map(|var| {
                    std::env::var(&var)
                        .with_context(|| format!("--api-key-env names {var}, which is not set"))
                })
                .transpose()?;
            let project = find_project(store.as_ref(), &project).await?;
            let app = App::new(store.clone(), AppSettings::default());
            let patch = callgrade_store::SimulatorSettingsPatch {
                base_url,
                model,
                api_key,
                concurrency,
                token_budget,
                voice,
            };
            // A voice field's path is `voice.<field>`; its flag is `--<field>`.
            let flag = |path: &str| {
                let field = path.strip_prefix("voice.").unwrap_or(path);
                format!("--{}", field.replace('_', "-"))
            };
            let settings = callgrade_app::simulation::configure_simulator(&app, project.id, &patch)
                .await
                .map_err(|e| flag_error(e, flag))?;
            out.print(&settings, || {
                format!(
                    "Simulator of {:?}: {} {} (key {}), {} runs at once, {} tokens per run",
                    project.name,
                    settings.base_url.as_deref().unwrap_or("(server default)"),
                    settings.model.as_deref().unwrap_or("(server default)"),
                    if settings.api_key_set {
                        "set"
                    } else {
                        "not set"
                    },
                    settings.concurrency,
                    settings.token_budget
                ) + &*format!(
                    "\nVoice: text to speech {} {} voice {}, speech to text {} {}",
                    settings
                        .voice
                        .tts_base_url
                        .as_deref()
                        .unwrap_or("(the simulator's)"),
                    settings
                        .voice
                        .tts_model
                        .as_deref()
                        .unwrap_or(VoiceSettings::DEFAULT_TTS_MODEL),
                    settings
                        .voice
                        .voice
                        .as_deref()
                        .unwrap_or(VoiceSettings::DEFAULT_VOICE),
                    settings
                        .voice
                        .stt_base_url
                        .as_deref()
                        .unwrap_or("(the simulator's)"),
                    settings
                        .voice
                        .stt_model
                        .as_deref()
                        .unwrap_or(VoiceSettings::DEFAULT_STT_MODEL),
                )
            });
        }
        ProjectCommand::RotateKey {
            project,
            overlap_minutes,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let app = App::new(store.clone(), AppSettings::default());
            let old = crate::keys::only_active_key(&app, &project).await?;
            let (_, key) = callgrade_app::keys::rotate(&app, project.id, old.id, overlap_minutes)
                .await
                .map_err(|e| flag_error(e, |_| "--overlap-minutes".into()))?;
            print_key(
                out,
                &project,
                key.expose(),
                webhook_url(project.id),
                &cekura_url,
                "Rotated the key of",
            );
        }
        ProjectCommand::VendorSecret {
            project,
            vendor,
            secret_env,
            clear,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let app = App::new(store.clone(), AppSettings::default());
            let vendor = admin::vendor(&vendor)?;
            let name = vendor.as_str();
            if clear {
                admin::remove_vendor_secret(&app, project.id, vendor).await?;
                out.print(&serde_json::json!({"vendor": name, "saved": false}), || {
                    format!("Removed the {name} secret of project {:?}.", project.name)
                });
            } else {
                let var = secret_env.unwrap_or_default();
                let secret = std::env::var(&var).with_context(|| {
                    format!("--secret-env names {var:?}, which is not set to a text value")
                })?;
                admin::save_vendor_secret(&app, project.id, vendor, &secret)
                    .await
                    .map_err(|e| flag_error(e, |_| format!("the value of {var}")))?;
                out.print(&serde_json::json!({"vendor": name, "saved": true}), || {
                    format!(
                        "Saved the {name} secret of project {:?}.\n  Cekura path:      {}/observability/v1/{name}/observe/ (with the project key)\n  per-project URL:  {}/webhooks/{name}/{}",
                        project.name,
                        db.public_url.trim_end_matches('/'),
                        db.public_url.trim_end_matches('/'),
                        project.id
                    )
                });
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_key(
    out: &Output,
    project: &Project,
    key: &str,
    webhook_url: String,
    cekura_url: &str,
    verb: &str,
) {
    let value = ProjectWithKey {
        id: project.id,
        name: &project.name,
        webhook_url,
        cekura_webhook_url: cekura_url.to_owned(),
        api_key: key,
    };
    out.print(&value, || {
        format!(
            "{verb} project {:?} (id {})\n  webhook URL:   {}\n  Cekura path:   {}\n  API key:       {}\n\n\
             The key is shown only now; store it in your sender's secrets.\n\
             Send it in the X-CEKURA-API-KEY header.",
            value.name, value.id, value.webhook_url, value.cekura_webhook_url, value.api_key
        )
    });
}

/// A use case's refusal as one line, its first problem named the way the command line names
/// that field (`label` turns a path into a flag or a word).
fn flag_error(e: AppError, label: impl Fn(&str) -> String) -> anyhow::Error {
    match &e {
        AppError::Invalid(errors) if !errors.is_empty() => {
            anyhow!("{} {}", label(&errors[0].path), errors[0].message)
        }
        _ => anyhow!(e),
    }
}

pub async fn find_project(store: &dyn Store, name_or_id: &str) -> anyhow::Result<Project> {
    store.find_project(name_or_id).await?.with_context(|| {
        format!("no project named or numbered {name_or_id:?} (`callgrade project list` shows them)")
    })
}

pub async fn agent(db: &DbArgs, cmd: AgentCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    match cmd {
        AgentCommand::Create {
            project,
            name,
            phone_number,
            description,
            connector,
            external_ids,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let app = App::new(store.clone(), AppSettings::default());
            let draft = AgentDraft {
                name: &name,
                phone_number: phone_number.as_deref(),
                description: description.as_deref(),
                connector: connector
                    .as_ref()
                    .map_or(ConnectorChange::Keep, ConnectorChange::Set),
                external_ids: Some(&external_ids),
            };
            let agent = admin::create_agent(&app, project.id, draft)
                .await
                .map_err(|e| {
                    flag_error(e, |path| match path {
                        "name" => "agent name".into(),
                        other => format!("--{}", other.replace('_', "-")),
                    })
                })?;
            out.print(&agent, || {
                format!(
                    "Created agent {:?} with id {} in project {:?}.\nSenders put \"agent_id\": {} in webhook payloads.",
                    agent.name, agent.id, project.name, agent.id
                )
            });
        }
        AgentCommand::Update {
            project,
            id,
            name,
            phone_number,
            description,
            connector,
            external_ids,
            no_external_ids,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let app = App::new(store.clone(), AppSettings::default());
            let ids = (no_external_ids || !external_ids.is_empty()).then_some(&external_ids[..]);
            let patch = AgentPatch {
                external_ids: ids,
                name: name.as_deref(),
                phone_number: phone_number.as_deref().map(Some),
                description: description.as_deref().map(Some),
                connector: match &connector {
                    None => ConnectorChange::Keep,
                    Some(serde_json::Value::Null) => ConnectorChange::Remove,
                    Some(v) => ConnectorChange::Set(v),
                },
            };
            let agent = admin::patch_agent(&app, project.id, id, patch)
                .await
                .map_err(|e| flag_error(e, |path| format!("--{}", path.replace('_', "-"))))?;
            out.print(&agent, || {
                format!(
                    "Updated agent {:?} (id {}); connector: {}",
                    agent.name,
                    agent.id,
                    agent.connector.as_ref().map_or("none", |c| c.kind.as_str())
                )
            });
        }
        AgentCommand::List { project } => {
            let project = find_project(store.as_ref(), &project).await?;
            let agents = store.list_agents(project.id).await?;
            let value = serde_json::json!({ "agents": agents });
            out.print(&value, || {
                if agents.is_empty() {
                    return format!(
                        "No agents in {:?} yet. Create one: callgrade agent create --project {} --name NAME",
                        project.name, project.id
                    );
                }
                let mut text = format!("{:<8} {:<24} {:<16} DESCRIPTION", "ID", "NAME", "PHONE");
                for a in &agents {
                    text.push_str(&format!(
                        "\n{:<8} {:<24} {:<16} {}",
                        a.id,
                        a.name,
                        a.phone_number.as_deref().unwrap_or("-"),
                        a.description.as_deref().unwrap_or("")
                    ));
                }
                text
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON object from the command line.
fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => {
            Err("must be a JSON object such as '{\"kind\": \"http_turn\", \"url\": \"…\"}'".into())
        }
        Err(e) => Err(format!("is not JSON: {e}")),
    }
}

/// A connector object, or `none` (as JSON null) to remove it.
fn parse_connector_arg(s: &str) -> Result<serde_json::Value, String> {
    if s.trim() == "none" {
        return Ok(serde_json::Value::Null);
    }
    parse_json_object(s)
}

/// `callgrade admin token [--rotate]`.
pub async fn token(db: &DbArgs, rotate: bool, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    let app = App::new(store, AppSettings::default());
    let token = admin::issue_admin_token(&app, rotate).await?;
    let value = serde_json::json!({ "token": token, "created": token.is_some() });
    out.print(&value, || match &token {
        Some(t) => format!(
            "Admin token (shown only now; sign in to the dashboard at {} with it):\n{t}",
            db.public_url
        ),
        None => "An admin token exists; it is shown only when created. `callgrade admin token --rotate` replaces it (and signs everyone out).".into(),
    });
    Ok(ExitCode::SUCCESS)
}

/// `callgrade project judge`: where a project's judge metrics send their prompts.
pub async fn set_judge(
    db: &DbArgs,
    project: &str,
    patch: JudgeSettingsPatch,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    let project = find_project(store.as_ref(), project).await?;
    let app = App::new(store, AppSettings::default());
    let judge = callgrade_app::metrics::set_judge(&app, project.id, &patch)
        .await
        // Each problem names a flag: `base_url` is `--base-url`.
        .map_err(|e| flag_error(e, |path| format!("--{}", path.replace('_', "-"))))?;
    out.print(&judge, || {
        format!(
            "Judge of {:?}: {} model {} (key {}), {} at once",
            project.name,
            judge.base_url.as_deref().unwrap_or("(server default)"),
            judge.model.as_deref().unwrap_or("(server default)"),
            if judge.api_key_set { "set" } else { "not set" },
            judge.concurrency
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// The voice endpoints of `project simulator`; "" clears a field back to its fallback.
#[derive(clap::Args, Debug, Default)]
pub struct VoiceFlags {
    /// Text to speech: an OpenAI-compatible base URL (default: the simulator's).
    #[arg(long)]
    tts_base_url: Option<String>,
    /// The text-to-speech model (default tts-1).
    #[arg(long)]
    tts_model: Option<String>,
    /// The caller's voice when its persona names none (default alloy).
    #[arg(long)]
    voice: Option<String>,
    /// The name of an environment variable that holds the text-to-speech key.
    #[arg(long)]
    tts_api_key_env: Option<String>,
    /// Speech to text: an OpenAI-compatible base URL (default: the simulator's).
    #[arg(long)]
    stt_base_url: Option<String>,
    /// The speech-to-text model (default whisper-1).
    #[arg(long)]
    stt_model: Option<String>,
    /// The name of an environment variable that holds the speech-to-text key.
    #[arg(long)]
    stt_api_key_env: Option<String>,
}

impl VoiceFlags {
    fn patch(self) -> anyhow::Result<Option<callgrade_store::VoiceSettingsPatch>> {
        let key = |flag: &str, var: Option<String>| {
            var.map(|var| {
                std::env::var(&var).with_context(|| format!("{flag} names {var}, which is not set"))
            })
            .transpose()
        };
        let patch = callgrade_store::VoiceSettingsPatch {
            tts_api_key: key("--tts-api-key-env", self.tts_api_key_env)?,
            stt_api_key: key("--stt-api-key-env", self.stt_api_key_env)?,
            tts_base_url: self.tts_base_url,
            tts_model: self.tts_model,
            voice: self.voice,
            stt_base_url: self.stt_base_url,
            stt_model: self.stt_model,
        };
        let any = patch.tts_base_url.is_some()
            || patch.tts_model.is_some()
            || patch.voice.is_some()
            || patch.tts_api_key.is_some()
            || patch.stt_base_url.is_some()
            || patch.stt_model.is_some()
            || patch.stt_api_key.is_some();
        Ok(any.then_some(patch))
    }
}
