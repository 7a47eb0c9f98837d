//! The OpenAPI 3.1 document of the whole API, served at `/openapi.json`.
//! Each operation, its body and its answers come from the handler's
//! `#[utoipa::path]`, and the router is built from the same annotations
//! (`mod.rs`), so a route cannot be served and go undocumented. This module
//! adds what every operation shares, once: the path parameters, the error
//! answers with every code that can come with each status, and the bearer
//! token (the open routes of `auth.rs` excepted).

use std::collections::BTreeMap;

use keel_api::ErrorBody;
use keel_core::ErrorCode;
use keel_core::openapi::NAME_PATTERN;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, Content, HeaderBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
};

use super::auth;

/// What the handlers' annotations do not say: the title, the shared error
/// body's schemas.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Keel",
        description = "Durable jobs, events, workflows and schedules. docs/api.md is the readable guide; this document is generated from the server's code.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(ErrorBody))
)]
pub(super) struct Base;

const BEARER: &str = "bearer";

/// The error statuses an operation can answer, with the codes of each.
/// 500 is a bug, not part of the contract; 405 answers a method no
/// operation has.
fn error_statuses() -> BTreeMap<u16, Vec<&'static str>> {
    let mut statuses: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in ErrorCode::ALL {
        let status = code.http_status();
        if status != 500 && status != 405 {
            statuses.entry(status).or_default().push(code.as_str());
        }
    }
    statuses
}

fn error_response(status: u16, codes: &[&str]) -> RefOr<Response> {
    let listed = codes
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = ResponseBuilder::new()
        .description(format!(
            "`{{\"error\":{{\"code\",\"message\"}}}}` with code {listed}"
        ))
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        );
    if status == 429 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("seconds to wait, on `rate_limited`"))
                .build(),
        );
    }
    RefOr::T(response.build())
}

/// A path parameter's schema, by its name.
fn path_parameter(name: &str) -> Parameter {
    let (pattern, description) = match name {
        "ns" => (Some(NAME_PATTERN), "the namespace"),
        "queue" => (Some(NAME_PATTERN), "the queue"),
        "topic" => (Some(NAME_PATTERN), "the topic"),
        "name" => (Some(NAME_PATTERN), "the resource's name"),
        "signal" => (Some("^[A-Za-z0-9._-]{1,64}$"), "the signal's name"),
        "project" => (Some(NAME_PATTERN), "the project"),
        "version" => (Some("^[0-9]{1,19}$"), "the version's number"),
        _ => (None, "the id"),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(pattern),
        ))
        .build()
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("PUT", item.put.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
    .collect()
}

/// An answer that flattens a spec (`#[serde(flatten)]`: the spec and its
/// state side by side) is an `allOf` of the two; a spec that refuses
/// unknown fields (`additionalProperties: false`, from `deny_unknown_fields`)
/// would refuse the state's fields too. In an `allOf`, such a spec is
/// copied in place without that word.
fn open_flattened(components: &mut Components) {
    let closed: BTreeMap<String, Schema> = components
        .schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(Schema::Object(object))
                if matches!(
                    object.additional_properties.as_deref(),
                    Some(AdditionalProperties::FreeForm(false))
                ) =>
            {
                let mut open = object.clone();
                open.additional_properties = None;
                Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
            }
            _ => None,
        })
        .collect();
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::AllOf(all)) = schema {
            for item in &mut all.items {
                if let RefOr::Ref(r) = item
                    && let Some(open) = closed.get(&r.ref_location)
                {
                    *item = RefOr::T(open.clone());
                }
            }
        }
    }
}

/// The served document: the router's paths with what they share added.
pub(super) fn finish(mut api: OpenApi) -> OpenApi {
    let statuses = error_statuses();
    for (path, item) in api.paths.paths.iter_mut() {
        let params: Vec<Parameter> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(path_parameter)
            .collect();
        if !params.is_empty() {
            item.parameters = Some(params);
        }
        for (method, op) in operations(item) {
            // Handlers of different domains share names (`get`, `list`):
            // the tag makes the id unique.
            if let (Some(tag), Some(id)) =
                (op.tags.as_ref().and_then(|t| t.first()), &op.operation_id)
            {
                op.operation_id = Some(format!("{tag}_{id}"));
            }
            let open = auth::is_open(method, path);
            let hook = path.starts_with("/v1/hooks/");
            for (status, codes) in &statuses {
                if open && !hook && matches!(status, 401 | 403) {
                    continue;
                }
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(*status, codes));
            }
            if open {
                op.security = Some(Vec::new());
            }
        }
    }
    let components = api.components.get_or_insert_with(Default::default);
    open_flattened(components);
    components.security_schemes.insert(
        BEARER.to_owned(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("keel_<id>_<secret>")
                .description(Some(
                    "A token from `POST /v1/tokens` or `keel token create`; its role, namespaces and resources decide what it reaches (docs/api.md).",
                ))
                .build(),
        ),
    );
    api.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    api
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn document() -> OpenApi {
        finish(super::super::documented().into_openapi())
    }

    #[test]
    fn the_document_and_the_route_table_name_the_same_operations() {
        let mut api = document();
        let documented: BTreeSet<(String, String)> = api
            .paths
            .paths
            .iter_mut()
            .flat_map(|(path, item)| {
                operations(item)
                    .into_iter()
                    .map(|(method, _)| (method.to_owned(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let ruled: BTreeSet<(String, String)> = auth::routes()
            .filter(|&(_, path)| path != "/openapi.json")
            .map(|(method, path)| (method.to_owned(), path.to_owned()))
            .collect();
        assert_eq!(documented, ruled);
    }

    #[test]
    fn operation_ids_are_unique_and_open_routes_say_so() {
        let mut api = document();
        let mut ids = BTreeSet::new();
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{id} twice");
                let open = op.security.as_ref().is_some_and(Vec::is_empty);
                assert_eq!(open, auth::is_open(method, path), "{method} {path}");
                assert!(
                    op.responses.responses.contains_key("400"),
                    "{method} {path}"
                );
            }
        }
        assert!(ids.contains("jobs_enqueue") && ids.contains("runs_start"));
    }

    /// Two types of one name would be one schema, the last registered
    /// winning (the incidents' event answer once replaced the topics').
    #[test]
    fn types_that_share_a_name_get_schemas_of_their_own() {
        let api = document();
        let schemas =
            serde_json::to_value(api.components.unwrap_or_default().schemas).unwrap_or_default();
        let has = |schema: &str, text: &str| schemas[schema].to_string().contains(text);
        assert!(has("EventAnswer", "\"seq\""), "{}", schemas["EventAnswer"]);
        assert!(has("IncidentEventAnswer", "\"dedup_key\""));
        assert!(has("Severity", "\"ticket\""), "{}", schemas["Severity"]);
        assert!(has("IncidentSeverity", "\"critical\""));
    }
}
