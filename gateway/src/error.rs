//! Every way a gateway request can fail, and its one mapping to HTTP: a status and a JSON body
//! `{"statusCode","message","error","timestamp","path","requestId"}` (plus `details` when a
//! service sent them with a 4xx). A 5xx body never carries a service's internals.

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use courier_actors::{CallError, Method, ServiceError};
use serde_json::json;

use crate::auth::TokenError;

/// What went wrong, as the client should hear it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The path has routes, with other methods.
    #[error("method not allowed here")]
    MethodNotAllowed(Vec<Method>),
    /// The body or query is not what the gateway takes.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the limit (bytes).
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not JSON.
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The token is missing or not valid.
    #[error("{0}")]
    Unauthorized(TokenError),
    /// The token lacks every role the route asks for.
    #[error("this route needs one of the roles: {0}")]
    Forbidden(String),
    /// Neither a secret nor a key is configured.
    #[error("authentication is not configured on this gateway")]
    AuthNotConfigured,
    /// The client is over its rate.
    #[error("too many requests")]
    RateLimited(Duration),
    /// The gateway is at its in-flight limit.
    #[error("the gateway is at its limit of requests in flight; try again shortly")]
    Overloaded,
    /// The service has no healthy instance.
    #[error("no healthy instance of {0} is available")]
    NoInstance(String),
    /// The service failed too often lately; calls are refused for a while.
    #[error("{0} is failing; calls are paused for a moment")]
    CircuitOpen(String),
    /// The deadline passed.
    #[error("the service did not answer in time")]
    Timeout,
    /// The service answered with an error.
    #[error("{}", .0.message)]
    Service(ServiceError),
    /// The service's reply could not be read, or NATS failed.
    #[error("the service could not be reached properly")]
    BadGateway,
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AuthNotConfigured
            | Self::Overloaded
            | Self::NoInstance(_)
            | Self::CircuitOpen(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Service(e) => {
                StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::BadGateway => StatusCode::BAD_GATEWAY,
        }
    }

    /// The response: status, JSON body, and the headers the status calls for.
    pub fn response(&self, path: &str, request_id: &str) -> HttpResponse {
        let status = self.status();
        let mut body = json!({
            "statusCode": status.as_u16(),
            "message": self.public_message(status),
            "error": status.canonical_reason().unwrap_or("Error"),
            "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "path": path,
            "requestId": request_id,
        });
        if let (Self::Service(e), true) = (self, status.is_client_error()) {
            if let Some(details) = &e.details {
                body["details"] = details.clone();
            }
        }
        let mut response = HttpResponse::build(status);
        match self {
            Self::Unauthorized(e) => {
                let challenge = match e {
                    TokenError::Missing => "Bearer".to_owned(),
                    other => {
                        format!("Bearer error=\"invalid_token\", error_description=\"{other}\"")
                    }
                };
                response.insert_header((header::WWW_AUTHENTICATE, challenge));
            }
            Self::MethodNotAllowed(methods) => {
                let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                response.insert_header((header::ALLOW, allow.join(", ")));
            }
            Self::RateLimited(wait) => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
            }
            _ => {}
        }
        response.json(body)
    }

    /// What the client reads: the error's own text, but for a service's 5xx only the status's
    /// reason (its message may describe internals).
    fn public_message(&self, status: StatusCode) -> String {
        match self {
            Self::Service(_) if status.is_server_error() => match status {
                StatusCode::SERVICE_UNAVAILABLE => "the service is busy; try again shortly".into(),
                StatusCode::GATEWAY_TIMEOUT => "the service did not answer in time".into(),
                _ => "the service failed to handle the request".into(),
            },
            other => other.to_string(),
        }
    }

    /// Whether this failure counts against the service's health (breaker, outliers).
    pub fn is_service_failure(&self) -> bool {
        match self {
            Self::Timeout | Self::BadGateway => true,
            Self::Service(e) => e.code >= 500,
            _ => false,
        }
    }
}

impl From<CallError> for GatewayError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NoResponders { subject } => {
                // The instance left between the pick and the send.
                let service = subject
                    .split('.')
                    .nth(2)
                    .unwrap_or("the service")
                    .to_owned();
                Self::NoInstance(service)
            }
            CallError::TimedOut { .. } => Self::Timeout,
            CallError::Service { error, .. } => Self::Service(error),
            other => {
                tracing::warn!(error = %other, "Call through NATS failed.");
                Self::BadGateway
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: &GatewayError) -> serde_json::Value {
        let bytes = e
            .response("/users/1", "r1")
            .into_body()
            .try_into_bytes()
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_error_body_has_the_documented_shape() {
        let b = body(&GatewayError::NotFound("GET /x".into()));
        assert_eq!(b["statusCode"], 404);
        assert_eq!(b["error"], "Not Found");
        assert_eq!(b["path"], "/users/1");
        assert_eq!(b["requestId"], "r1");
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(b["message"].as_str().unwrap().contains("GET /x"));
    }

    #[test]
    fn a_service_4xx_passes_through_with_details_and_a_5xx_is_hidden() {
        let invalid = ServiceError::bad_request("email: not an address")
            .with_details(json!({"field": "email"}));
        let b = body(&GatewayError::Service(invalid));
        assert_eq!(b["statusCode"], 400);
        assert_eq!(b["message"], "email: not an address");
        assert_eq!(b["details"]["field"], "email");

        let internal = ServiceError::internal("pool timed out at db.rs:42")
            .with_details(json!({"sql": "SELECT"}));
        let b = body(&GatewayError::Service(internal));
        assert_eq!(b["statusCode"], 500);
        assert!(!b.to_string().contains("db.rs"), "{b}");
        assert!(b.get("details").is_none());
    }

    #[test]
    fn a_missing_token_is_challenged_and_a_rate_limit_says_when() {
        let r = GatewayError::Unauthorized(TokenError::Missing).response("/", "r");
        assert_eq!(r.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        let r = GatewayError::RateLimited(Duration::from_millis(300)).response("/", "r");
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
