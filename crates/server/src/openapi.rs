use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "callgrade",
        description = "Self-hosted QA and observability for voice AI agents. The webhook speaks Cekura's custom-provider contract."
    ),
    modifiers(&Security),
    tags(
        (name = "webhook", description = "Call transcripts in"),
        (name = "calls", description = "Stored calls"),
        (name = "deliveries", description = "The webhook delivery log"),
        (name = "project", description = "The key's project and its settings"),
        (name = "test runs", description = "Scenarios, results and runs"),
        (name = "metrics", description = "Metrics, the rubric, judges and evaluation"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-CEKURA-API-KEY"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
