//! Recordings: a call's request to fetch one, settled once (the recording, or a warning on the
//! call); a recording stored with a new call in its write (not with a resend); only a call of
//! the project's; the timeline read into what evaluation sees.

use super::*;
use callgrade_core::{
    AnalysedRecording, AudioTimeline, Detector, FieldError, RecordingRequest, Span,
};

fn audio(key: &str, agent_end: u64) -> AnalysedRecording {
    AnalysedRecording {
        object_key: key.to_owned(),
        content_type: "audio/wav".into(),
        size_bytes: 4_044,
        sample_rate: 8_000,
        channels: 2,
        duration_ms: 2_000,
        agent_channel: 1,
        origin: "simulation".into(),
        timeline: AudioTimeline {
            frame_ms: 20,
            detector: Detector::default(),
            duration_ms: 2_000,
            caller: vec![Span {
                start_ms: 0,
                end_ms: 400,
            }],
            agent: vec![Span {
                start_ms: 700,
                end_ms: agent_end,
            }],
            clipped: [0.0, 0.0],
        },
        envelope: [vec![0, 200, 0], vec![0, 0, 180]],
        bucket_ms: 50,
    }
}

fn recording(project_id: i64, call_id: &str, agent_end: u64) -> StoredRecording {
    StoredRecording {
        call_id: call_id.to_owned(),
        project_id,
        audio: audio(&format!("{project_id}/{call_id}"), agent_end),
        created_at: t0(),
    }
}

/// Sends one call with a recording.
async fn send_recorded(
    store: &dyn Store,
    project_id: i64,
    agent_id: i64,
    call: Value,
    recording: AnalysedRecording,
) -> IngestOutcome {
    let body = json!({"agent_id": agent_id, "calls": [call]});
    let mut batch = validate_batch(&body, &Limits::default()).unwrap();
    batch.calls[0].recording = Some(Box::new(recording));
    let delivery = delivery(project_id, &body.to_string());
    store.ingest(batch, delivery).await.unwrap()
}

pub(super) async fn story_recordings(store: &dyn Store) {
    let (project, _) = store.create_project("recorded").await.unwrap();
    let (other, _) = store.create_project("elsewhere").await.unwrap();
    let agent = store
        .create_agent(project.id, &NewAgent::named("a"))
        .await
        .unwrap();

    // A call that says where its recording is keeps the request with it.
    let url = "https://files.example.com/rec-1.wav?X-Amz-Signature=abc";
    let pointed = json!({"recording_url": url, "agent_channel": 0});
    let receipt = send_one(
        store,
        project.id,
        t0(),
        Some(agent.id),
        merge(call("rec-1"), pointed),
    )
    .await;
    let id = receipt.call_id.clone();
    assert_eq!(store.recording(project.id, &id).await.unwrap(), None);
    let request = store.recording_request(project.id, &id).await.unwrap();
    assert_eq!(
        request,
        Some(RecordingRequest {
            url: url.into(),
            agent_channel: 0
        })
    );
    assert_eq!(store.recording_request(other.id, &id).await.unwrap(), None);

    // Fetched: the recording is stored and the request is done, once.
    let first = recording(project.id, &id, 1_500);
    let fetched = FetchOutcome::Fetched(Box::new(first.clone()));
    assert!(!store
        .settle_recording_request(other.id, &id, &fetched)
        .await
        .unwrap());
    assert!(store
        .settle_recording_request(project.id, &id, &fetched)
        .await
        .unwrap());
    assert!(!store
        .settle_recording_request(project.id, &id, &fetched)
        .await
        .unwrap());
    assert_eq!(
        store.recording_request(project.id, &id).await.unwrap(),
        None
    );
    assert_eq!(
        store.recording(project.id, &id).await.unwrap().as_ref(),
        Some(&first)
    );
    assert_eq!(store.recording(other.id, &id).await.unwrap(), None);

    // Evaluation reads the timeline with the call.
    let inputs = store
        .evaluation_inputs(project.id, std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(inputs[0].call.audio.as_ref(), Some(&first.audio.timeline));

    // Refused: no recording, and the call keeps the warning.
    let pointed = json!({"metadata": {"recording_url": "https://files.example.com/gone.wav"}});
    let gone = send_one(
        store,
        project.id,
        t0(),
        Some(agent.id),
        merge(call("rec-gone"), pointed),
    )
    .await;
    let request = store
        .recording_request(project.id, &gone.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        request.agent_channel, 1,
        "the agent on the right unless said"
    );
    let warning = FieldError::new("recording_url", "the recording was not kept: 404");
    let refused = FetchOutcome::Refused(warning.clone());
    assert!(store
        .settle_recording_request(project.id, &gone.call_id, &refused)
        .await
        .unwrap());
    assert_eq!(
        store.recording(project.id, &gone.call_id).await.unwrap(),
        None
    );
    let detail = store
        .call(project.id, &gone.call_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.warnings.last(), Some(&warning));

    // A call ingested with its recording has it from the same write: its first evaluation
    // sees the audio.
    let recorded = accepted(
        send_recorded(
            store,
            project.id,
            agent.id,
            call("rec-2"),
            audio("k2", 1_200),
        )
        .await,
    );
    let id2 = recorded.calls[0].call_id.clone();
    let stored = store.recording(project.id, &id2).await.unwrap().unwrap();
    assert_eq!(stored.project_id, project.id);
    assert_eq!(stored.audio, audio("k2", 1_200));
    // A resend is a duplicate: the first recording stays.
    let again = accepted(
        send_recorded(
            store,
            project.id,
            agent.id,
            call("rec-2"),
            audio("k3", 1_300),
        )
        .await,
    );
    assert_eq!(again.duplicates, 1);
    let key = |r: Option<StoredRecording>| r.unwrap().audio.object_key;
    assert_eq!(key(store.recording(project.id, &id2).await.unwrap()), "k2");
    // A refused call stores no recording.
    let changed = with(call("rec-2"), "endedReason", json!("other"));
    rejected(send_recorded(store, project.id, agent.id, changed, audio("k4", 1_300)).await);
    assert_eq!(key(store.recording(project.id, &id2).await.unwrap()), "k2");
}

fn merge(mut call: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        call[k] = v.clone();
    }
    call
}
