//! The caller's voice and ears: OpenAI-compatible text to speech (`POST {base}/audio/speech`)
//! and speech to text (`POST {base}/audio/transcriptions`), at the telephone's 8 kHz.

use callgrade_audio::{read_wav, resample, wav_bytes, Pcm, WavEncoding, TELEPHONY_RATE};
use serde_json::{json, Value};
use std::time::Duration;

use crate::llm::{excerpt, read_bytes_capped, root_cause, ChatClient, MAX_ANSWER_BYTES};

/// The most audio one line of speech may bring (about 5 minutes of 24 kHz PCM16).
const MAX_SPEECH_BYTES: usize = 16 * 1024 * 1024;
/// Attempts of one request, on 429, 5xx, timeouts and connection errors.
const ATTEMPTS: u32 = 2;

/// Where a speech model is.
#[derive(Clone)]
pub struct SpeechEndpoint {
    /// e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SpeechEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechEndpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What a voice simulation speaks and hears with.
#[derive(Debug, Clone)]
pub struct VoiceEndpoints {
    pub tts: SpeechEndpoint,
    /// The text-to-speech voice when the persona names none.
    pub voice: String,
    pub stt: SpeechEndpoint,
}

impl ChatClient {
    /// `text` spoken in `voice` at `speed`, as 8 kHz mono samples.
    pub async fn speak(
        &self,
        endpoint: &SpeechEndpoint,
        text: &str,
        voice: &str,
        speed: f32,
    ) -> Result<Vec<i16>, String> {
        let url = format!("{}/audio/speech", endpoint.base_url.trim_end_matches('/'));
        let body = json!({"model": endpoint.model, "input": text, "voice": voice,
                          "response_format": "wav", "speed": speed});
        let bytes = self
            .send_speech(
                endpoint,
                &url,
                || self.http().post(&url).json(&body),
                MAX_SPEECH_BYTES,
            )
            .await?;
        let pcm = read_wav(&bytes)
            .map_err(|e| format!("the text-to-speech answer is not a usable WAV file: {e}"))?;
        Ok(resample(&mono(&pcm), pcm.sample_rate, TELEPHONY_RATE))
    }

    /// What is said in `samples` (8 kHz mono).
    pub async fn transcribe(
        &self,
        endpoint: &SpeechEndpoint,
        samples: &[i16],
    ) -> Result<String, String> {
        let url = format!(
            "{}/audio/transcriptions",
            endpoint.base_url.trim_end_matches('/')
        );
        let wav = wav_bytes(
            &Pcm {
                sample_rate: TELEPHONY_RATE,
                channels: vec![samples.to_vec()],
            },
            WavEncoding::Pcm16,
        );
        let form = || {
            let file = reqwest::multipart::Part::bytes(wav.clone())
                .file_name("speech.wav")
                .mime_str("audio/wav")
                .expect("a valid MIME type");
            reqwest::multipart::Form::new()
                .part("file", file)
                .text("model", endpoint.model.clone())
                .text("response_format", "json")
        };
        let bytes = self
            .send_speech(
                endpoint,
                &url,
                || self.http().post(&url).multipart(form()),
                MAX_ANSWER_BYTES,
            )
            .await?;
        let text = String::from_utf8_lossy(&bytes);
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the speech-to-text answer is not JSON ({e}): {}",
                excerpt(&text)
            )
        })?;
        match value.get("text").and_then(Value::as_str) {
            Some(t) => Ok(t.trim().to_owned()),
            None => Err(format!(
                "the speech-to-text answer has no \"text\": {}",
                excerpt(&text)
            )),
        }
    }

    async fn send_speech(
        &self,
        endpoint: &SpeechEndpoint,
        url: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
        cap: usize,
    ) -> Result<Vec<u8>, String> {
        let mut attempt = 1;
        loop {
            let mut r = request().timeout(endpoint.timeout);
            if let Some(key) = &endpoint.api_key {
                r = r.bearer_auth(key);
            }
            let problem = match r.send().await {
                Ok(r) if r.status().is_success() => return read_bytes_capped(r, cap).await,
                Ok(r) => {
                    let status = r.status();
                    let body = read_bytes_capped(r, MAX_ANSWER_BYTES)
                        .await
                        .unwrap_or_default();
                    let problem = format!(
                        "{url} answered HTTP {status}: {}",
                        excerpt(&String::from_utf8_lossy(&body))
                    );
                    if status.as_u16() != 429 && !status.is_server_error() {
                        return Err(problem);
                    }
                    problem
                }
                Err(e) if e.is_timeout() => format!(
                    "{url} did not answer within {} s",
                    endpoint.timeout.as_secs()
                ),
                Err(e) => format!("could not reach {url}: {}", root_cause(&e)),
            };
            if attempt >= ATTEMPTS {
                return Err(format!("{problem} (after {attempt} attempts)"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            attempt += 1;
        }
    }
}

/// The channels mixed to one.
fn mono(pcm: &Pcm) -> Vec<i16> {
    match pcm.channels.len() {
        0 => Vec::new(),
        1 => pcm.channels[0].clone(),
        n => (0..pcm.frames())
            .map(|i| {
                let sum: i32 = pcm.channels.iter().map(|c| i32::from(c[i])).sum();
                (sum / n as i32) as i16
            })
            .collect(),
    }
}
