//! A namespace's objectives, measured from every node's counts.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_api::slos::{SloAlert, SloAnswer, SlosAnswer};
use keel_core::slo::{ALERTS, WINDOWS};
use keel_engine::Engine;

use super::ApiError;
use super::extract::NamespacePath;

#[utoipa::path(
    get,
    path = "/namespaces/{ns}/slos",
    tag = "slos",
    summary = "Each queue and topic objective's value, error budget left, burn rates and alerts",
    responses((status = 200, description = "OK", body = keel_api::slos::SlosAnswer))
)]
pub(super) async fn list(
    State(engine): State<Arc<Engine>>,
    NamespacePath(ns): NamespacePath,
) -> Result<Json<SlosAnswer>, ApiError> {
    let statuses = engine.slos().statuses(Some(&ns), engine.now()).await?;
    let slos = statuses
        .into_iter()
        .map(|s| {
            let status = s.status;
            SloAnswer {
                kind: s.subject.kind,
                name: s.subject.name,
                objective: status.objective,
                target: status.target,
                value: status.value,
                good: status.good,
                total: status.total,
                budget_remaining: status.budget_remaining,
                burn_rates: WINDOWS
                    .iter()
                    .zip(status.burn_rates)
                    .map(|(w, rate)| (w.name.to_owned(), rate))
                    .collect(),
                alerts: ALERTS
                    .iter()
                    .zip(status.firing)
                    .map(|(a, firing)| SloAlert {
                        severity: a.severity,
                        long_window: a.long_window().name.to_owned(),
                        short_window: a.short_window().name.to_owned(),
                        factor: a.factor,
                        firing,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(SlosAnswer { slos }))
}
