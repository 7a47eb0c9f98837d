//! Running handlers: a test call (nothing committed), a queue's job (its
//! end a commit or a failure's ack) and writing that commit.

use keel_core::handler::state::ObjectRef;
use keel_core::{Error, ErrorCode, HandlerName, Namespace, Retry};
use keel_sandbox::Failure;
use keel_store::{Ack, AckOutcome, HandlerCommit, LeasedJob};
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

    /// Writes a flush's commits in one store call: each job ends with its
    /// state and effects, or (when its state was refused) fails this
    /// attempt; a stale lease's attempt leaves nothing.
    pub(crate) async fn commit_all(&self, namespace: &Namespace, commits: Vec<HandlerCommit>) {
        let tokens: Vec<_> = commits
            .iter()
            .map(|c| (c.token, c.result.clone()))
            .collect();
        let now = self.clock.now();
        let answers = match self.store.handler_commits(namespace, commits, now).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "cannot commit handlers' attempts; their leases expire and they run again");
                return;
            }
        };
        let (mut acked, mut outcomes, mut fails) = (Vec::new(), Vec::new(), Vec::new());
        for ((token, result), answer) in tokens.into_iter().zip(answers) {
            match answer {
                Ok(done) => {
                    acked.push(Ok(done));
                    outcomes.push(AckOutcome::Complete { result });
                }
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
                    fails.push(Ack {
                        token,
                        outcome: AckOutcome::Fail {
                            message: format!("the attempt's state was refused: {}", e.message),
                            retry: Retry {
                                retry: true,
                                retry_after_ms: None,
                            },
                        },
                    });
                }
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "cannot commit a handler's attempt; its lease expires and it runs again");
                }
            }
        }
        if !acked.is_empty() {
            self.jobs.ended(namespace, &acked, &outcomes, now);
        }
        if !fails.is_empty() {
            crate::services::ack_all(&self.jobs, namespace, fails).await;
        }
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
