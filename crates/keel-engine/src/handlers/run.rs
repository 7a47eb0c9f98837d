//! Running handlers: a test call (nothing committed), a queue's job (its
//! end a commit or a failure's ack) and writing that commit.

use keel_core::handler::state::ObjectRef;
use keel_core::{Error, ErrorCode, HandlerName, Namespace, Retry};
use keel_sandbox::Failure;
use keel_store::{Ack, AckOutcome, Acked, HandlerCommit, LeasedJob};
use serde_json::value::RawValue;

use super::{Finished, HandlerService, Invoked};

impl HandlerService {
    /// A test call: the current version on `payload`, nothing committed.
    pub async fn invoke(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        payload: Box<RawValue>,
        object: Option<ObjectRef>,
    ) -> Result<Invoked, Error> {
        if let Some(o) = &object {
            o.check()?;
        }
        let version = self.current(namespace, name).await?;
        let input = job_input("invoke", &payload, 1, object.as_ref())?;
        let (invocation, collected) = self.run(&version, object, "invoke".into(), &input).await?;
        Ok(Invoked {
            version: version.version,
            invocation,
            writes: collected.writes,
            effects: collected.effects,
        })
    }

    /// Runs a queue's handler for one leased job: how the job ends.
    pub(crate) async fn run_job(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        job: LeasedJob,
    ) -> Finished {
        let fail = |message: String| {
            Finished::Ack(Ack {
                token: job.lease_token,
                outcome: AckOutcome::Fail {
                    message,
                    retry: Retry {
                        retry: true,
                        retry_after_ms: None,
                    },
                },
            })
        };
        let object = ObjectRef::from_tags(&job.tags);
        let ran = async {
            let version = self.current(namespace, name).await?;
            let input = job_input(
                &job.id.to_string(),
                &job.payload,
                job.attempt,
                object.as_ref(),
            )?;
            self.run(&version, object.clone(), job.id.to_string(), &input)
                .await
        };
        let (invocation, collected) = match ran.await {
            Ok(ran) => ran,
            Err(e) => return fail(e.message),
        };
        let result = match invocation.outcome {
            Ok(result) => result,
            Err(failure) => return fail(failure_message(&failure)),
        };
        let effects = match collected.effects.into_job(
            namespace,
            object.as_ref(),
            &job.id.to_string(),
            &self.ids,
            self.clock.now(),
        ) {
            Ok(effects) => effects,
            Err(e) => return fail(e.message),
        };
        Finished::Commit(Box::new(HandlerCommit {
            token: job.lease_token,
            result: Some(result),
            object,
            writes: collected
                .writes
                .into_iter()
                .map(|(key, value)| keel_core::handler::state::StateOp {
                    key,
                    value,
                    if_version: None,
                })
                .collect(),
            effects: effects.into_iter().collect(),
        }))
    }

    /// Writes a handler's commit: the job ends with its state and effects,
    /// or (when the state was refused) fails this attempt.
    pub(crate) async fn commit(&self, namespace: &Namespace, commit: HandlerCommit) {
        let token = commit.token;
        let outcome = AckOutcome::Complete {
            result: commit.result.clone(),
        };
        let now = self.clock.now();
        match self.store.handler_commit(namespace, commit, now).await {
            Ok(acked) => self.committed(namespace, acked, outcome, now),
            Err(e) if e.code == ErrorCode::LeaseLost => {
                tracing::debug!(%namespace, error = %e, "a handler's attempt lost its lease: nothing committed");
            }
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::StorageFull
                        | ErrorCode::VersionMismatch
                        | ErrorCode::PayloadTooLarge
                        | ErrorCode::NamespaceFull
                ) =>
            {
                let fail = Ack {
                    token,
                    outcome: AckOutcome::Fail {
                        message: format!("the attempt's state was refused: {}", e.message),
                        retry: Retry {
                            retry: true,
                            retry_after_ms: None,
                        },
                    },
                };
                crate::services::ack_all(&self.jobs, namespace, vec![fail]).await;
            }
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "cannot commit a handler's attempt; its lease expires and it runs again");
            }
        }
    }

    fn committed(
        &self,
        namespace: &Namespace,
        acked: Acked,
        outcome: AckOutcome,
        now: keel_core::Timestamp,
    ) {
        self.jobs.ended(namespace, &[Ok(acked)], &[outcome], now);
    }
}

/// The JSON a handler receives: `id`, `payload`, `attempt`, `object`.
fn job_input(
    id: &str,
    payload: &RawValue,
    attempt: u32,
    object: Option<&ObjectRef>,
) -> Result<Vec<u8>, Error> {
    #[derive(serde::Serialize)]
    struct Input<'a> {
        id: &'a str,
        payload: &'a RawValue,
        attempt: u32,
        object: Option<&'a ObjectRef>,
    }
    serde_json::to_vec(&Input {
        id,
        payload,
        attempt,
        object,
    })
    .map_err(|e| Error::internal(format!("a handler's input: {e}")))
}

/// The message a failed attempt records: the limit's name for a limit.
pub fn failure_message(failure: &Failure) -> String {
    let mut message = failure.message().to_owned();
    if message.len() > 4096 {
        let mut end = 4096;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}
