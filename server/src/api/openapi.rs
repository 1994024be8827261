//! The API's routes, as one table that both builds the router and writes
//! `GET /v1/openapi.json`: a route can't be served without being documented. Every
//! body's schema is generated from its Rust type (utoipa's `ToSchema`, derived on the
//! sdk's API types), and every route names its error codes, each answered as
//! `ApiErrorBody`.

use axum::routing::MethodRouter;
use blyan_sdk::api::ApiErrorBody;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    Required, ResponseBuilder,
};

use super::AppState;

/// A body of a request or a response.
pub(super) enum Body {
    None,
    /// JSON of a type with a schema: the type's schema registrar.
    Json(fn(&mut Schemas) -> RefOr<Schema>),
    /// Bytes of this media type.
    Bytes(&'static str),
    /// A protobuf page by default (`EventRecordPage`), `{"records": [...]}` with
    /// `format=json`.
    Events,
}

/// The schemas a document has collected so far.
pub(super) type Schemas = Vec<(String, RefOr<Schema>)>;

/// `T`'s schema, registered with every schema it refers to, as a reference.
pub(super) fn json<T: utoipa::ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// A list of `T`.
pub(super) fn json_list<T: utoipa::ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    let item = json::<T>(schemas);
    RefOr::T(Schema::Array(ArrayBuilder::new().items(item).build()))
}

/// One route: what serves it and what the document says of it.
pub(super) struct Route {
    pub method: HttpMethod,
    /// axum's syntax, which is OpenAPI's: `{name}` for a path parameter.
    pub path: &'static str,
    pub summary: &'static str,
    /// The status of success: 200, or 101 for the WebSocket.
    pub status: u16,
    /// Answered within the request timeout (everything but blobs and the WebSocket).
    pub timed: bool,
    pub query: &'static [(&'static str, &'static str)],
    /// Request headers the route reads: name and meaning.
    pub headers: &'static [(&'static str, &'static str)],
    /// Other answers that are not errors: status, and when it comes. A 2xx carries the
    /// response's content; any other (a 304), none.
    pub also: &'static [(u16, &'static str)],
    /// Also answered for HEAD (axum does for every GET): documented where a client
    /// uses it, as for a blob's size before fetching it.
    pub head: bool,
    pub request: Body,
    pub response: Body,
    /// The error answers: status, and the codes it carries.
    pub errors: &'static [(u16, &'static str)],
    pub handler: MethodRouter<AppState>,
}

/// The method's name, as an OpenAPI path item spells it.
pub(super) fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Put => "put",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

fn content(body: &Body, schemas: &mut Schemas) -> Vec<(&'static str, utoipa::openapi::Content)> {
    let bytes = || {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Binary,
                )))
                .build(),
        ))
    };
    match body {
        Body::None => Vec::new(),
        Body::Json(schema) => vec![(
            "application/json",
            ContentBuilder::new().schema(Some(schema(schemas))).build(),
        )],
        Body::Bytes(media) => vec![(media, ContentBuilder::new().schema(Some(bytes())).build())],
        Body::Events => {
            let record = RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .description(Some(
                        "A record: seq, prev_hash, time_ms, hash, and its event and cause as JSON",
                    ))
                    .build(),
            ));
            vec![
                (
                    "application/x-protobuf",
                    ContentBuilder::new().schema(Some(bytes())).build(),
                ),
                (
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::Object)
                                .property("records", ArrayBuilder::new().items(record).build())
                                .required("records")
                                .build(),
                        ))))
                        .build(),
                ),
            ]
        }
    }
}

/// The names of a path's `{parameters}`.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
}

/// The OpenAPI document of `routes`.
pub(super) fn document(routes: &[Route]) -> OpenApi {
    let mut schemas = Schemas::new();
    let error = json::<ApiErrorBody>(&mut schemas);
    let mut paths = Paths::new();
    for route in routes {
        paths.add_path_operation(
            route.path,
            vec![route.method.clone()],
            operation(route, &route.method, &error, &mut schemas),
        );
        if route.head {
            paths.add_path_operation(
                route.path,
                vec![HttpMethod::Head],
                operation(route, &HttpMethod::Head, &error, &mut schemas),
            );
        }
    }

    schemas.sort_by(|a, b| a.0.cmp(&b.0));
    // A name registered twice must be one schema: two types of one name would
    // otherwise lose one silently.
    schemas.dedup_by(|a, b| {
        let same = a.0 == b.0;
        if same {
            assert_eq!(
                serde_json::to_value(&a.1).ok(),
                serde_json::to_value(&b.1).ok(),
                "two schemas are named {}",
                a.0
            );
        }
        same
    });
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Blyan Ledger")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The ledger's HTTP API. Every error is `{code, message}` with the status \
                     listed; PROTOCOL.md gives the bytes, hashes and proofs beyond these \
                     bodies.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new().schemas_from_iter(schemas).build(),
        ))
        .build()
}

/// The document of `route` as answered for `method`.
fn operation(
    route: &Route,
    method: &HttpMethod,
    error: &RefOr<Schema>,
    schemas: &mut Schemas,
) -> utoipa::openapi::path::Operation {
    let mut operation = OperationBuilder::new()
        .summary(Some(route.summary))
        .operation_id(Some(format!("{} {}", method_name(method), route.path)));
    // Every parameter is a string: path parameters required, the others optional.
    let text = |name: &str, place: ParameterIn, required: Required| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(place)
            .required(required)
            .schema(Some(RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(Type::String).build(),
            ))))
    };
    for name in path_parameters(route.path) {
        operation = operation.parameter(text(name, ParameterIn::Path, Required::True));
    }
    let optional = route
        .headers
        .iter()
        .map(|parameter| (parameter, ParameterIn::Header))
        .chain(
            route
                .query
                .iter()
                .map(|parameter| (parameter, ParameterIn::Query)),
        );
    for ((name, description), place) in optional {
        operation =
            operation.parameter(text(name, place, Required::False).description(Some(*description)));
    }
    let request = content(&route.request, schemas);
    if !request.is_empty() {
        let mut body = RequestBodyBuilder::new().required(Some(Required::True));
        for (media, content) in request {
            body = body.content(media, content);
        }
        operation = operation.request_body(Some(body.build()));
    }
    // A HEAD answer is a GET's without its body.
    let with_body = !matches!(method, HttpMethod::Head);
    let success = |description: &str, schemas: &mut Schemas| {
        let mut answer = ResponseBuilder::new().description(description);
        if with_body {
            for (media, content) in content(&route.response, schemas) {
                answer = answer.content(media, content);
            }
        }
        answer.build()
    };
    operation = operation.response(route.status.to_string(), success("Success", &mut *schemas));
    for (status, when) in route.also {
        let answer = if (200..300).contains(status) {
            success(when, &mut *schemas)
        } else {
            ResponseBuilder::new().description(*when).build()
        };
        operation = operation.response(status.to_string(), answer);
    }
    for (status, codes) in route.errors {
        let mut answer = ResponseBuilder::new().description(format!("Error codes: {codes}"));
        if with_body {
            answer = answer.content(
                "application/json",
                ContentBuilder::new().schema(Some(error.clone())).build(),
            );
        }
        operation = operation.response(status.to_string(), answer.build());
    }
    operation.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(target)) => found.push(target),
                        _ => refs(value, found),
                    }
                }
            }
            serde_json::Value::Array(values) => values.iter().for_each(|value| refs(value, found)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_once_and_every_schema_it_names_is_there() {
        let routes = super::super::routes();
        let document: serde_json::Value =
            serde_json::from_str(&document(&routes).to_json().unwrap()).unwrap();
        let mut operations = 0;
        for route in &routes {
            let method = method_name(&route.method);
            let operation = &document["paths"][route.path][method];
            assert!(
                operation.is_object(),
                "{method} {} is undocumented",
                route.path
            );
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters
                        .iter()
                        .filter(|parameter| parameter["in"] == "path")
                        .map(|parameter| parameter["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                declared,
                path_parameters(route.path).collect::<Vec<_>>(),
                "{}",
                route.path
            );
            assert!(
                operation["responses"][route.status.to_string()].is_object(),
                "{}",
                route.path
            );
            operations += 1;
            if route.head {
                // HEAD is a GET's answer without its body, errors included.
                assert!(matches!(route.method, HttpMethod::Get), "{}", route.path);
                let head = &document["paths"][route.path]["head"];
                let statuses = std::iter::once(route.status)
                    .chain(route.also.iter().map(|(status, _)| *status))
                    .chain(route.errors.iter().map(|(status, _)| *status));
                for status in statuses {
                    let answer = &head["responses"][status.to_string()];
                    assert!(answer.is_object(), "HEAD {} {status}", route.path);
                    assert!(answer["content"].is_null(), "HEAD {} {status}", route.path);
                }
                operations += 1;
            }
            for (status, _) in route.also {
                // A 2xx carries the route's content; a 304 none.
                let answer = &operation["responses"][status.to_string()];
                assert!(answer.is_object(), "{} {status}", route.path);
                assert_eq!(
                    answer["content"].is_object(),
                    (200..300).contains(status),
                    "{} {status}",
                    route.path
                );
            }
            let headers: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters
                        .iter()
                        .filter(|parameter| parameter["in"] == "header")
                        .map(|parameter| parameter["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                headers,
                route
                    .headers
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>(),
                "{}",
                route.path
            );
        }
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, operations, "one operation per route");
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target}"));
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
    }
}
