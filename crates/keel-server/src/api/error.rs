//! The error body: `{"error":{"code","message"}}` with the status the code maps to.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_api::{ErrorBody, ErrorDetail};
use keel_core::{Error, ErrorCode};

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(Error::new(code, message))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError(Error::invalid(message))
    }
}

pub(super) fn body(e: &Error) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail::from(e),
    }
}

pub(super) fn status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.code == ErrorCode::Internal {
            tracing::error!(error = %self.0, "internal error");
        }
        let mut response = (status(self.0.code), Json(body(&self.0))).into_response();
        if let Some(ms) = self.0.retry_after_ms {
            let seconds = ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if matches!(
            self.0.code,
            ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout | ErrorCode::Overloaded
        ) {
            // The rest of the body was never read, so the connection cannot
            // carry another request: say so, or a keep-alive client reuses it
            // and its next request fails.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}
