//! Every error answer: `{"error":{"code","message"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable snake_case `code` (keel_core::ErrorCode) and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(value_type = keel_core::ErrorCode)]
    pub code: String,
    pub message: String,
}

impl From<&keel_core::Error> for ErrorDetail {
    fn from(e: &keel_core::Error) -> Self {
        ErrorDetail {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
        }
    }
}
