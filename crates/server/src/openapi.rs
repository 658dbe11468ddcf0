use axum::http::Method;
use callgrade_core::access::Scope;
use callgrade_core::{Limits, MetricDraft, ResultDraft};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{AllOfBuilder, Object, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
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
        (name = "alerts", description = "Alert rules and the alerts they opened"),
        (name = "webhooks", description = "Outbound webhooks: endpoints, signed events, deliveries and replays"),
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

/// The document of the documented routes, completed with what holds for every route, the rules
/// across fields that the drafts' derived schemas cannot state, and this deployment's webhook
/// limit.
pub(crate) fn complete(
    mut openapi: utoipa::openapi::OpenApi,
    limits: &Limits,
) -> utoipa::openapi::OpenApi {
    EdgeAnswers.modify(&mut openapi);
    if let Some(calls) = webhook_calls_schema(&mut openapi) {
        calls.max_items = Some(limits.max_calls_per_request);
    }
    if let Some(components) = openapi.components.as_mut() {
        for (name, rules) in [
            ("MetricDraft", MetricDraft::cross_field_rules()),
            ("ResultDraft", ResultDraft::cross_field_rules()),
        ] {
            if let Some(schema) = components.schemas.get_mut(name) {
                let fields = std::mem::replace(schema, RefOr::T(Schema::default()));
                let all = rules
                    .into_iter()
                    .fold(AllOfBuilder::new().item(fields), |all, rule| all.item(rule));
                *schema = all.into();
            }
        }
    }
    openapi
}

fn webhook_calls_schema(
    openapi: &mut utoipa::openapi::OpenApi,
) -> Option<&mut utoipa::openapi::schema::Array> {
    let body = openapi
        .components
        .as_mut()?
        .schemas
        .get_mut("WebhookBody")?;
    let RefOr::T(Schema::Object(body)) = body else {
        return None;
    };
    match body.properties.get_mut("calls")? {
        RefOr::T(Schema::Array(calls)) => Some(calls),
        _ => None,
    }
}

/// The answers of the HTTP edge itself (authentication, rate limits, extractors, the store),
/// added to each operation they apply to, so that a handler documents only its own.
struct EdgeAnswers;

impl Modify for EdgeAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (route, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let takes = |place: ParameterIn| {
                    operation
                        .parameters
                        .iter()
                        .flatten()
                        .any(|p| p.parameter_in == place)
                };
                let (query, path) = (takes(ParameterIn::Query), takes(ParameterIn::Path));
                let body = operation.request_body.is_some();
                let mut answer = |status: &str, response: Response| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(RefOr::T(response));
                };
                if query {
                    answer("400", error("A query parameter is not what it takes"));
                }
                if path {
                    answer("400", error("A path parameter is not UTF-8"));
                }
                if body {
                    answer("400", error("The body is not JSON of this shape"));
                    answer(
                        "408",
                        error("The body did not arrive whole within the body deadline"),
                    );
                    answer("413", error("The body is over the limit"));
                    answer("415", error("The body is not sent as application/json"));
                }
                if secured {
                    let scope = crate::auth::required_scope(&method, route);
                    answer(
                        "403",
                        error(&format!(
                            "The key lacks the `{scope}` scope this route needs"
                        )),
                    );
                    answer("401", error("Missing, unknown, revoked or expired key"));
                    answer("429", rate_limited());
                    answer(
                        "500",
                        error("The server could not complete the request; retry later"),
                    );
                    answer("503", error("The server is shutting down; retry shortly"));
                    state_scope(operation, scope);
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
}

/// Names the scope a route needs in each of its security requirements (OpenAPI 3.1 lets a
/// non-OAuth scheme list the roles it needs), in `x-required-scope`, and in its description,
/// from the same table the server enforces.
fn state_scope(operation: &mut Operation, scope: Scope) {
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| {
            value
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    operation.security = Some(
        schemes
            .into_iter()
            .map(|scheme| SecurityRequirement::new(scheme, [scope.as_str()]))
            .collect(),
    );
    operation
        .extensions
        .get_or_insert_with(Default::default)
        .merge(
            ExtensionsBuilder::new()
                .add("x-required-scope", scope.as_str())
                .build(),
        );
    let needs = format!("Needs a key with the `{scope}` scope.");
    operation.description = Some(match operation.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
        _ => needs,
    });
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn rate_limited() -> Response {
    let mut response = error("Over the project's rate limit");
    response.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some("Seconds until a request will be let through"))
            .build(),
    );
    response
}
