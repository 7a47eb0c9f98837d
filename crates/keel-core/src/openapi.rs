//! OpenAPI schemas of the wire types whose serde is written by hand: times
//! (RFC 3339), ids (UUIDv7) and names (the naming rules as a pattern). The
//! derived types reach these through `utoipa::ToSchema`, so the document the
//! server serves says what these types accept and print.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::workflow::RunId;
use crate::{
    EndpointName, ErrorCode, HandlerName, JobId, Namespace, QueueName, ScheduleName, SourceName,
    SubscriptionName, Timestamp, TopicName, WorkflowName,
};

/// The naming rules of `name.rs`, as a JSON Schema pattern.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,128}$";

fn string(format: SchemaFormat, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(format))
        .description(Some(description))
}

/// Implements the two schema traits from one builder expression.
macro_rules! schema {
    ($ty:ty, $build:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($build.build()))
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
        }
    };
}

schema!(
    Timestamp,
    string(
        SchemaFormat::KnownFormat(KnownFormat::DateTime),
        "An RFC 3339 time; Keel answers in UTC with milliseconds."
    )
);

macro_rules! id_schema {
    ($($ty:ty),*) => {$(
        schema!(
            $ty,
            string(SchemaFormat::Custom("uuid".into()), "A UUIDv7, hyphenated.")
        );
    )*};
}
id_schema!(JobId, RunId);

macro_rules! name_schema {
    ($($ty:ty),*) => {$(
        schema!(
            $ty,
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NAME_PATTERN))
                .description(Some("1 to 128 characters of a-z, A-Z, 0-9, '-', '_' or '.'"))
        );
    )*};
}
name_schema!(
    Namespace,
    QueueName,
    WorkflowName,
    TopicName,
    SubscriptionName,
    SourceName,
    EndpointName,
    ScheduleName,
    HandlerName
);

schema!(
    ErrorCode,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
        .description(Some(
            ErrorCode::ALL
                .map(|c| format!("`{}` ({})", c.as_str(), c.http_status()))
                .join(", ")
        ))
);
