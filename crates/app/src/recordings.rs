//! Calls' recordings: the audio goes to the recording store (the data directory, or an
//! S3-compatible bucket for several instances), its analysis to the database. Keeping one
//! decodes and analyses it first, so a recording that cannot be measured is refused whole;
//! the object is written before its row, so a recording the store lists is always readable.
//! A simulated call's recording is stored with the call; one a sender points to
//! (`recording_url`) is fetched by the call's evaluation job, before it evaluates.

use callgrade_audio::{analyse, decode, envelope, Detector, Pcm};
use callgrade_core::{AnalysedRecording, FieldError, RecordingRequest};
use callgrade_store::{FetchOutcome, StoredRecording};
use object_store::{path::Path, ObjectStore, PutPayload};
use std::sync::Arc;

use crate::fetch::FetchError;
use crate::{App, AppError, Result};

/// The waveform's resolution: one peak per side per bucket.
pub const BUCKET_MS: u32 = 50;

/// Where recordings are kept.
#[derive(Clone)]
pub struct RecordingStore {
    objects: Arc<dyn ObjectStore>,
    /// What a log line or a page may say of it (no credentials).
    pub describe: String,
}

impl std::fmt::Debug for RecordingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Default for RecordingStore {
    /// In memory: for tests and for commands that do not serve recordings.
    fn default() -> Self {
        Self {
            objects: Arc::new(object_store::memory::InMemory::new()),
            describe: "memory".into(),
        }
    }
}

impl RecordingStore {
    /// A directory of this machine (created if missing).
    pub fn directory(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let objects = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(std::io::Error::other)?;
        Ok(Self {
            objects: Arc::new(objects),
            describe: dir.display().to_string(),
        })
    }

    /// An S3-compatible bucket, `s3://bucket[/prefix]`; credentials, region and endpoint
    /// come from the usual `AWS_*` variables (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for
    /// a local server).
    pub fn s3(url: &str) -> std::result::Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("a recordings URL is s3://bucket[/prefix], got {url:?}"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("the recordings URL {url:?} names no bucket"));
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("the recordings bucket {url:?}: {e}"))?;
        let objects: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
            "" => Arc::new(s3),
            p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
        };
        Ok(Self {
            objects,
            describe: url.to_owned(),
        })
    }
}

/// Where a recording came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A simulated voice call's line.
    Simulation,
    /// The call's `recording_url`.
    Fetched,
    /// A file sent with the call (the observe endpoint's `voice_recording`).
    Uploaded,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Simulation => "simulation",
            Self::Fetched => "fetched",
            Self::Uploaded => "uploaded",
        }
    }
}

/// Checks, decodes and analyses `bytes`, then writes them to the recording store under a key
/// of their own: a recording ready to be stored with its call, at ingest or once fetched.
/// Nothing is written when the recording is refused.
pub async fn prepare(
    app: &App,
    project_id: i64,
    bytes: Vec<u8>,
    origin: Origin,
    agent_channel: u32,
) -> Result<AnalysedRecording> {
    let limit = app.settings.max_recording_bytes;
    if bytes.len() > limit {
        return Err(AppError::bad_request(format!(
            "the recording is {} bytes, over the {limit}-byte limit (--max-recording-bytes)",
            bytes.len()
        )));
    }
    if agent_channel > 1 {
        return Err(AppError::bad_request(format!(
            "agent_channel must be 0 or 1, got {agent_channel}"
        )));
    }
    // Decoding and analysis are CPU work: off the async threads.
    let max_seconds = app.settings.max_recording_seconds;
    let (bytes, analysed) = tokio::task::spawn_blocking(move || {
        let analysed = measure(&bytes, agent_channel, max_seconds);
        (bytes, analysed)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the recording analysis panicked");
        AppError::Internal
    })?;
    let (pcm, timeline, envelope) = analysed.map_err(AppError::BadRequest)?;
    let content_type = content_type(&bytes);
    // A key per upload: a replaced recording's object is never overwritten under a reader.
    let object_key = format!("{project_id}/{}", uuid::Uuid::now_v7());
    let size_bytes = bytes.len() as u64;
    app.settings
        .recordings
        .objects
        .put(&Path::from(object_key.as_str()), PutPayload::from(bytes))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, store = %app.settings.recordings.describe, "could not write a recording");
            AppError::Unavailable("the recording store could not take the recording; try again".into())
        })?;
    Ok(AnalysedRecording {
        object_key,
        content_type: content_type.into(),
        size_bytes,
        sample_rate: pcm.sample_rate,
        channels: pcm.channels.len() as u32,
        duration_ms: pcm.duration_ms(),
        agent_channel,
        origin: origin.as_str().into(),
        timeline,
        envelope,
        bucket_ms: BUCKET_MS,
    })
}

/// Removes a prepared recording's object that no row will point to (its call was refused,
/// was a resend, or has a newer recording). Best effort: an orphan costs only space.
pub async fn discard(app: &App, object_key: &str) {
    let objects = &app.settings.recordings.objects;
    if let Err(e) = objects.delete(&Path::from(object_key)).await {
        tracing::warn!(error = %e, key = object_key, "could not remove an unused recording");
    }
}

/// How fetching a call's requested recording went, before its evaluation.
#[derive(Debug)]
pub enum Fetch {
    /// Done, for good: the speech timeline when there is a recording now, `None` when the call
    /// has a warning instead.
    Settled(Option<callgrade_core::AudioTimeline>),
    /// Not yet: the source may answer later (why, to retry the evaluation with).
    Retry(String),
}

/// Fetches the recording a call's sender pointed to (`recording_url`) through the forgery
/// guard, analyses and stores it; or, when it cannot be used, leaves a warning on the call
/// saying why. A failure that may pass is retried unless this is the `last_try`.
pub async fn fetch_requested(
    app: &App,
    project_id: i64,
    call_id: &str,
    request: &RecordingRequest,
    last_try: bool,
) -> Result<Fetch> {
    let fetched = app
        .settings
        .fetch
        .get(&request.url, app.settings.max_recording_bytes)
        .await;
    let why = match fetched {
        Ok(bytes) => {
            let origin = Origin::Fetched;
            match prepare(app, project_id, bytes, origin, request.agent_channel).await {
                Ok(audio) => {
                    let (timeline, key) = (audio.timeline.clone(), audio.object_key.clone());
                    let recording = StoredRecording {
                        call_id: call_id.to_owned(),
                        project_id,
                        audio,
                        created_at: app.now(),
                    };
                    let outcome = FetchOutcome::Fetched(Box::new(recording));
                    if !app
                        .store
                        .settle_recording_request(project_id, call_id, &outcome)
                        .await?
                    {
                        // Another evaluation of the call settled it first.
                        discard(app, &key).await;
                    }
                    tracing::info!(call_id, url = %request.shown(), "fetched a call's recording");
                    return Ok(Fetch::Settled(Some(timeline)));
                }
                Err(AppError::BadRequest(why)) => why,
                Err(e) if !last_try => return Ok(Fetch::Retry(e.to_string())),
                Err(e) => e.to_string(),
            }
        }
        Err(FetchError::Failed(why)) if !last_try => return Ok(Fetch::Retry(why)),
        Err(FetchError::Failed(why) | FetchError::Refused(why)) => why,
    };
    tracing::warn!(call_id, url = %request.shown(), reason = %why, "a call's recording cannot be used");
    let warning = FieldError::new(
        "recording_url",
        format!("the recording was not kept: {why}"),
    );
    app.store
        .settle_recording_request(project_id, call_id, &FetchOutcome::Refused(warning))
        .await?;
    Ok(Fetch::Settled(None))
}

type Measured = (Pcm, callgrade_core::AudioTimeline, [Vec<u8>; 2]);

fn measure(
    bytes: &[u8],
    agent_channel: u32,
    max_seconds: u32,
) -> std::result::Result<Measured, String> {
    let pcm =
        decode(bytes, max_seconds).map_err(|e| format!("the recording cannot be used: {e}"))?;
    let timeline = analyse(&pcm, agent_channel as usize, &Detector::default())
        .map_err(|e| format!("the recording cannot be measured: {e}"))?;
    let agent = agent_channel as usize;
    let peaks = |c: usize| envelope(&pcm.channels[c], pcm.sample_rate, BUCKET_MS);
    let envelope = [peaks(1 - agent), peaks(agent)];
    Ok((pcm, timeline, envelope))
}

/// The recording's type, from its first bytes.
fn content_type(bytes: &[u8]) -> &'static str {
    match bytes {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => "audio/wav",
        [b'f', b'L', b'a', b'C', ..] => "audio/flac",
        [b'O', b'g', b'g', b'S', ..] => "audio/ogg",
        [b'I', b'D', b'3', ..] | [0xFF, 0xE0..=0xFF, ..] => "audio/mpeg",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// A stored recording's bytes (all of them, or `range` of them).
pub async fn read(
    app: &App,
    recording: &StoredRecording,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>> {
    let path = Path::from(recording.audio.object_key.as_str());
    let objects = &app.settings.recordings.objects;
    let read = match range {
        Some(r) => objects.get_range(&path, r).await.map(|b| b.to_vec()),
        None => match objects.get(&path).await {
            Ok(got) => got.bytes().await.map(|b| b.to_vec()),
            Err(e) => Err(e),
        },
    };
    read.map_err(|e| {
        tracing::error!(error = %e, key = %recording.audio.object_key, "could not read a recording");
        AppError::Unavailable("the recording store could not be read; try again".into())
    })
}
