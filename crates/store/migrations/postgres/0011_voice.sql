-- Voice simulation: each project's text-to-speech and speech-to-text endpoints (each unset
-- field falls back to the simulator endpoint's, or to OpenAI's model and voice names).

ALTER TABLE projects ADD COLUMN simulator_tts_base_url TEXT;
ALTER TABLE projects ADD COLUMN simulator_tts_model TEXT;
ALTER TABLE projects ADD COLUMN simulator_voice TEXT;
ALTER TABLE projects ADD COLUMN simulator_tts_api_key TEXT;
ALTER TABLE projects ADD COLUMN simulator_stt_base_url TEXT;
ALTER TABLE projects ADD COLUMN simulator_stt_model TEXT;
ALTER TABLE projects ADD COLUMN simulator_stt_api_key TEXT;
