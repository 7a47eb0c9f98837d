//! The JavaScript engine module: QuickJS-ng and `js/engine.c`, compiled to
//! WebAssembly by `scripts/build-js-engine` (reproducibly; CI checks the
//! committed bytes against a rebuild).

/// The engine module's bytes.
pub(crate) const ENGINE: &[u8] = include_bytes!("../js/engine.wasm");
