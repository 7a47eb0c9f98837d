//! Workflows: versioned DAG definitions and the pure scheduler that runs them.
//!
//! [`definition`] parses and validates what users write; [`expr`] is the one
//! expression language; [`run`] is the journal a store keeps per run; and
//! [`scheduler`] decides, from a journal and what was observed, what happens
//! next. Nothing here does IO or reads the clock.

pub mod definition;
pub mod expr;
pub mod run;
pub mod scheduler;

pub use definition::{Definition, Format, Problem};
pub use run::{Handle, ParentRef, RunId, RunState, RunStatus, StepRecord, StepStatus};
pub use scheduler::{Command, HttpRequest, Machine, Outcome, RunMeta, Work};
