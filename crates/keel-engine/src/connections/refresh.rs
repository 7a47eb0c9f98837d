//! Refreshes: one job per connection and version on the namespace's
//! `keel.connections` queue (its idempotency key says which), asked for by
//! callers that need a fresh token and by the sweep for connections whose
//! refresh time came; the job swaps the tokens by compare-and-set, or
//! turns the connection `needs_reauth` and says so.

use keel_core::connection::{ConnectionStatus, Tokens, refresh_times};
use keel_core::job::JobRequest;
use std::sync::PoisonError;

use keel_core::{
    Backoff, ConnectionName, Error, ErrorCode, Namespace, QueueName, QueuePolicy, QueueRef,
    Timestamp,
};
use keel_store::{AckOutcome, Connection, ConnectionWrite, Integration, LeasedJob, SealedRef};
use serde::{Deserialize, Serialize};

use super::{ConnectionService, client_of, oauth};

/// The queue each namespace's refreshes wait on.
pub const REFRESH_QUEUE: &str = "keel.connections";
/// A refresh's tries before the connection is given up as `needs_reauth`.
const REFRESH_ATTEMPTS: u32 = 12;
const REFRESH_LEASE_MS: u64 = 30_000;

/// A refresh job's payload.
#[derive(Serialize, Deserialize)]
struct RefreshJob {
    connection: ConnectionName,
    version: u64,
}

impl ConnectionService {
    /// Asks for the connection's refresh: one job per version it read,
    /// whoever asks and however often.
    pub(crate) async fn request_refresh(&self, connection: &Connection) -> Result<(), Error> {
        let queue = QueueRef {
            namespace: connection.namespace.clone(),
            queue: refresh_queue(),
        };
        self.ensure_queue(&queue).await?;
        let payload = serde_json::value::to_raw_value(&RefreshJob {
            connection: connection.name.clone(),
            version: connection.version,
        })
        .map_err(|e| Error::internal(e.to_string()))?;
        let request = JobRequest {
            payload,
            priority: None,
            run_at: None,
            delay_ms: None,
            max_attempts: Some(REFRESH_ATTEMPTS),
            backoff: Some(Backoff::default()),
            lease_ms: Some(REFRESH_LEASE_MS),
            // The connection's birth is in the key: one deleted and made
            // again starts at version 1 anew, within the keys' 24 hours.
            idempotency_key: Some(format!(
                "refresh/{}/{}/{}",
                connection.name,
                connection.created_at.as_millis(),
                connection.version
            )),
            ordering_key: Some(connection.name.to_string()),
            tags: None,
            debounce: None,
            traceparent: None,
            object: None,
        };
        self.jobs.enqueue(&queue, request).await?;
        Ok(())
    }

    async fn ensure_queue(&self, queue: &QueueRef) -> Result<(), Error> {
        if self
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&queue.namespace)
        {
            return Ok(());
        }
        let policy = QueuePolicy {
            max_attempts: Some(REFRESH_ATTEMPTS),
            lease_ms: Some(REFRESH_LEASE_MS),
            ..QueuePolicy::default()
        };
        if self.queues.policy(queue).await? != policy {
            self.queues.set_own_policy(queue, policy).await?;
        }
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.namespace.clone());
        self.queues_woken.notify_waiters();
        Ok(())
    }

    /// Asks for the refresh of every connection whose time has come.
    pub(crate) async fn sweep(&self) -> Result<usize, Error> {
        let due = self.store.connections_due(self.clock.now(), 256).await?;
        for connection in &due {
            self.request_refresh(connection).await?;
        }
        Ok(due.len())
    }

    /// Works one refresh job: how to end it.
    pub(crate) async fn refresh(&self, namespace: &Namespace, job: &LeasedJob) -> AckOutcome {
        match self.try_refresh(namespace, job).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "a connection's refresh failed");
                // Its last try: the connection is flagged rather than left
                // behind a dead job its version's idempotency key points to.
                if job.attempt >= job.max_attempts
                    && let Ok(asked) = serde_json::from_str::<RefreshJob>(job.payload.get())
                    && let Ok(connection) = self
                        .store
                        .connection_get(namespace, &asked.connection)
                        .await
                    && connection.version == asked.version
                {
                    let integration = self
                        .store
                        .integration_get(namespace, &connection.integration)
                        .await
                        .ok();
                    let why = format!("its refresh failed {} times: {}", job.attempt, e.message);
                    if let Err(e) = self.give_up(&connection, integration.as_ref(), &why).await {
                        tracing::warn!(%namespace, error = %e, "cannot flag a connection");
                    }
                }
                retry(e.message)
            }
        }
    }

    async fn try_refresh(
        &self,
        namespace: &Namespace,
        job: &LeasedJob,
    ) -> Result<AckOutcome, Error> {
        let asked: RefreshJob = serde_json::from_str(job.payload.get())
            .map_err(|e| Error::internal(format!("a refresh job does not read: {e}")))?;
        let connection = match self
            .store
            .connection_get(namespace, &asked.connection)
            .await
        {
            Ok(c) => c,
            Err(e) if e.code == ErrorCode::NotFound => return Ok(done()),
            Err(e) => return Err(e),
        };
        // Refreshed (or connected again) since it was asked for.
        if connection.version != asked.version
            || connection.tokens.status != ConnectionStatus::Active
        {
            return Ok(done());
        }
        let integration = match self
            .store
            .integration_get(namespace, &connection.integration)
            .await
        {
            Ok(i) => i,
            Err(e) if e.code == ErrorCode::NotFound => {
                self.give_up(&connection, None, "its integration was deleted")
                    .await?;
                return Ok(done());
            }
            Err(e) => return Err(e),
        };
        let keys = self.keys()?;
        let now = self.clock.now();
        let Some(sealed_refresh) = &connection.tokens.refresh_token else {
            // Nothing to refresh with: a token of unknown lifetime is kept
            // and looked at again in an hour; one past its expiry is dead.
            return match connection.tokens.expires_at {
                Some(expiry) if expiry <= now => {
                    self.give_up(
                        &connection,
                        Some(&integration),
                        "its token expired and the provider gave no refresh token",
                    )
                    .await?;
                    Ok(done())
                }
                expiry => {
                    let mut write = connection.tokens.clone();
                    write.refresh_at = expiry.unwrap_or_else(|| refresh_times(now, None).1);
                    self.store
                        .connection_swap(
                            namespace,
                            &connection.name,
                            connection.version,
                            &write,
                            now,
                        )
                        .await?;
                    Ok(done())
                }
            };
        };
        let resolved = integration.spec.check(true)?;
        let secret = keys.open_value(
            &SealedRef::ClientSecret {
                namespace: namespace.clone(),
                integration: integration.name.clone(),
            },
            &integration.client_secret,
        )?;
        let refresh_token = keys.open_value(&connection.sealed_at(true), sealed_refresh)?;
        let answer = oauth::token(
            &self.client,
            &resolved,
            &client_of(&integration, &secret),
            oauth::Grant::Refresh {
                refresh_token: &refresh_token,
            },
        )
        .await;
        match answer {
            Ok(tokens) => {
                let keep = connection.tokens.refresh_token.clone();
                let refs = SealedRef::tokens(namespace, &connection.integration, &connection.name);
                let write = self.sealed(&refs, tokens, keep, self.clock.now())?;
                let swapped = self
                    .store
                    .connection_swap(
                        namespace,
                        &connection.name,
                        connection.version,
                        &write,
                        self.clock.now(),
                    )
                    .await?;
                if swapped.is_none() {
                    tracing::info!(%namespace, connection = %connection.name,
                        "a refresh's tokens were not stored: the connection was written meanwhile");
                }
                Ok(done())
            }
            Err(refused) if refused.invalid_grant => {
                // Another writer may have moved the connection on (a
                // reconnect, or a refresh whose answer this one lost to).
                let again = self
                    .store
                    .connection_get(namespace, &connection.name)
                    .await?;
                if again.version == connection.version {
                    self.give_up(&connection, Some(&integration), &refused.message)
                        .await?;
                }
                Ok(done())
            }
            Err(refused) if job.attempt >= job.max_attempts => {
                let why = format!(
                    "its refresh failed {} times: {}",
                    job.attempt, refused.message
                );
                self.give_up(&connection, Some(&integration), &why).await?;
                Ok(done())
            }
            Err(refused) => {
                tracing::info!(%namespace, connection = %connection.name, attempt = job.attempt,
                    reason = %refused.message, "a refresh is tried again later");
                Ok(retry(refused.message))
            }
        }
    }

    /// Marks a connection `needs_reauth` (if no one wrote it meanwhile)
    /// and says so on its topic.
    async fn give_up(
        &self,
        connection: &Connection,
        integration: Option<&Integration>,
        why: &str,
    ) -> Result<(), Error> {
        let mut write = connection.tokens.clone();
        write.status = ConnectionStatus::NeedsReauth;
        write.error = Some(why.to_owned());
        let moved = self
            .store
            .connection_swap(
                &connection.namespace,
                &connection.name,
                connection.version,
                &write,
                self.clock.now(),
            )
            .await?;
        if let Some(moved) = moved {
            tracing::warn!(namespace = %moved.namespace, connection = %moved.name, reason = why,
                "a connection needs its end user to connect again");
            if let Some(integration) = integration {
                self.publish(integration, &moved, "connection.needs_reauth")
                    .await;
            }
        }
        Ok(())
    }

    /// A connection's write from a token answer, its secrets sealed;
    /// `keep` is the sealed refresh token kept when none was rotated.
    pub(super) fn sealed(
        &self,
        (access_at, refresh_at_ref): &(SealedRef, SealedRef),
        tokens: Tokens,
        keep: Option<String>,
        now: Timestamp,
    ) -> Result<ConnectionWrite, Error> {
        let keys = self.keys()?;
        let (expires_at, refresh_at) = refresh_times(now, tokens.expires_in_s);
        let refresh_token = match &tokens.refresh_token {
            Some(token) => Some(keys.seal(refresh_at_ref, token)?),
            None => keep,
        };
        Ok(ConnectionWrite {
            status: ConnectionStatus::Active,
            access_token: keys.seal(access_at, &tokens.access_token)?,
            refresh_token,
            token_type: tokens.token_type,
            scope: tokens.scope,
            expires_at,
            refresh_at,
            refreshed_at: now,
            error: None,
        })
    }
}

pub fn refresh_queue() -> QueueName {
    QueueName::new(REFRESH_QUEUE).unwrap_or_else(|_| unreachable!("a valid name"))
}

fn done() -> AckOutcome {
    AckOutcome::Complete { result: None }
}

fn retry(message: String) -> AckOutcome {
    AckOutcome::Fail {
        message,
        retry: keel_core::Retry {
            retry: true,
            retry_after_ms: None,
        },
    }
}
