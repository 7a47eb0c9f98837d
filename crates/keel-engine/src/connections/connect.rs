//! The connect dance: a session with a single-use `state` (and the PKCE
//! verifier, sealed) good for ten minutes, the provider's consent page,
//! and the callback that takes the session once, exchanges the code and
//! stores the sealed tokens.

use keel_core::connection::{ConnectAnswer, ConnectRequest, Refused, SESSION_TTL_MS};
use keel_core::{Error, ErrorCode, IntegrationName, Namespace};
use keel_store::{ConnectSession, Connection, SealedRef};
use serde::Deserialize;

use super::{ConnectionService, client_of, oauth};

/// What the provider sent the end user back with.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A callback that stored its connection.
#[derive(Clone, Debug)]
pub struct Connected {
    pub connection: Connection,
    pub return_to: Option<String>,
}

impl ConnectionService {
    /// Starts the dance: a single-use `state` good for ten minutes, the
    /// PKCE verifier sealed beside it, and the URL to send the end user to.
    pub async fn connect(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
        request: ConnectRequest,
    ) -> Result<ConnectAnswer, Error> {
        let keys = self.keys()?;
        let integration = self.store.integration_get(namespace, name).await?;
        let resolved = integration.spec.check(true)?;
        let redirect_url = match (&integration.spec.redirect_url, &self.public_url) {
            (Some(url), _) => url.clone(),
            (None, Some(public)) => format!("{}/oauth/callback", public.trim_end_matches('/')),
            (None, None) => {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    "no redirect URL: set the integration's redirect_url or start the server \
                     with --public-url",
                ));
            }
        };
        if let Some(to) = &request.return_to {
            let url = url::Url::parse(to)
                .map_err(|e| Error::invalid(format!("return_to is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::invalid("return_to must be an http(s) URL"));
            }
        }
        let scopes = request
            .scopes
            .unwrap_or_else(|| integration.spec.scopes.clone());
        let mut asked = integration.spec.clone();
        asked.scopes = scopes.clone();
        asked.check(true)?;
        let state = oauth::random_token(&self.random)?;
        let verifier = if integration.spec.pkce {
            Some(oauth::random_token(&self.random)?)
        } else {
            None
        };
        let now = self.clock.now();
        let session = ConnectSession {
            state: state.clone(),
            namespace: namespace.clone(),
            integration: name.clone(),
            connection: request.connection,
            verifier: match &verifier {
                Some(v) => keys.seal(
                    &SealedRef::Verifier {
                        state: state.clone(),
                    },
                    v,
                )?,
                None => String::new(),
            },
            redirect_url: redirect_url.clone(),
            return_to: request.return_to,
            expires_at: now.plus_ms(SESSION_TTL_MS),
        };
        self.store.session_put(&session, now).await?;
        let challenge = verifier.as_deref().map(oauth::challenge);
        let authorize_url = resolved.authorize_url(&keel_core::connection::Authorize {
            client_id: &integration.spec.client_id,
            redirect_url: &redirect_url,
            state: &state,
            challenge: challenge.as_deref(),
            scopes: &scopes,
        });
        Ok(ConnectAnswer {
            authorize_url,
            state,
            expires_at: session.expires_at,
        })
    }

    /// Ends the dance: the session is taken (once), the code exchanged,
    /// the tokens sealed and stored, and `connection.created` published.
    pub async fn callback(&self, callback: Callback) -> Result<Connected, Error> {
        let keys = self.keys()?;
        let state = callback
            .state
            .ok_or_else(|| Error::invalid("the callback has no state"))?;
        let now = self.clock.now();
        let session = self.store.session_take(&state, now).await?.ok_or_else(|| {
            Error::invalid("unknown or expired state: start the connection again")
        })?;
        if let Some(error) = callback.error {
            let description = callback
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "the provider answered {error}{description}"
            )));
        }
        let code = callback
            .code
            .ok_or_else(|| Error::invalid("the callback has no code"))?;
        let integration = self
            .store
            .integration_get(&session.namespace, &session.integration)
            .await?;
        let resolved = integration.spec.check(true)?;
        let secret = keys.open_value(
            &SealedRef::ClientSecret {
                namespace: session.namespace.clone(),
                integration: session.integration.clone(),
            },
            &integration.client_secret,
        )?;
        let verifier = if session.verifier.is_empty() {
            None
        } else {
            Some(keys.open_value(
                &SealedRef::Verifier {
                    state: session.state.clone(),
                },
                &session.verifier,
            )?)
        };
        let grant = oauth::Grant::Code {
            code: &code,
            redirect_url: &session.redirect_url,
            verifier: verifier.as_deref(),
        };
        let tokens = oauth::token(
            &self.client,
            &resolved,
            &client_of(&integration, &secret),
            grant,
        )
        .await
        .map_err(upstream)?;
        let refs = SealedRef::tokens(
            &session.namespace,
            &session.integration,
            &session.connection,
        );
        let write = self.sealed(&refs, tokens, None, self.clock.now())?;
        let connection = self
            .store
            .connection_put(
                &session.namespace,
                &session.connection,
                &session.integration,
                &write,
                self.clock.now(),
            )
            .await?;
        tracing::info!(namespace = %connection.namespace, connection = %connection.name,
            integration = %connection.integration, "a connection was made");
        self.publish(&integration, &connection, "connection.created")
            .await;
        Ok(Connected {
            connection,
            return_to: session.return_to,
        })
    }
}

fn upstream(refused: Refused) -> Error {
    Error::new(ErrorCode::UpstreamFailed, refused.message)
}
