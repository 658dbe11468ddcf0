//! Integration tests: the real server on port 0, spoken to over HTTP.

mod alerts;
mod api;
mod browser;
mod common;
mod dashboard;
mod dashboard_simulation;
mod evaluation;
mod fakes;
mod keys;
mod openapi;
mod outbound;
mod privacy;
mod recording_url;
mod runs;
mod security;
mod simulation;
mod traces;
mod vendors;
mod voice;
mod webhook;
