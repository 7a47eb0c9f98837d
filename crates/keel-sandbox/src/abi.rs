//! The handler ABI: what a module must export and may import.
//!
//! A handler is a core WebAssembly module. It exports its `memory`,
//! `keel_alloc(size: i32) -> i32` (memory the host may write `size` bytes
//! to) and `keel_handle(ptr: i32, len: i32) -> i64`, and optionally the
//! reactor's `_initialize`. Keel writes the job's JSON (`id`, `payload`,
//! `attempt`, `object`) with `keel_alloc` and calls `keel_handle`, which
//! answers `ptr << 32 | len` of a tagged answer: `R` and the result's JSON,
//! or `E` and an error message (the attempt fails with it).
//!
//! It may import only two functions of the module `keel`:
//! `call(op: i32, ptr: i32, len: i32) -> i32` sends the request JSON at
//! `ptr` for operation `op` ([`Op`]) and answers the length of the answer
//! (`{"ok": value}` or `{"error": message}`), which `take(ptr: i32)` then
//! copies into memory the guest allocated. Anything else (WASI, sockets,
//! files) is refused at upload with the import named. `wit/keel.wit` says
//! the same world in WIT.

/// The module a handler's imports come from.
pub const MODULE: &str = "keel";
/// A result's tag: the JSON follows.
pub(crate) const RESULT: u8 = b'R';
/// An error's tag: the message follows.
pub(crate) const ERROR: u8 = b'E';
/// Compiled JavaScript's tag: the bytecode follows.
pub(crate) const BYTECODE: u8 = b'B';

/// What a host call asks for. Requests and answers are JSON; the fields are
/// those of the JavaScript `ctx` (docs/handlers.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `{"line"}`: one log line (kept by the sandbox, bounded).
    Log,
    /// `{"key"}` → the value or `null`.
    StateGet,
    /// `{"keys"}` → `{key: value}` for the keys present.
    StateGetMany,
    /// `{"key","value"}`: buffered until the attempt commits.
    StatePut,
    /// `{"key"}`: buffered until the attempt commits.
    StateDelete,
    /// `{"prefix"?,"start"?,"end"?,"limit"?,"cursor"?}` → `{"items","cursor"}`.
    StateList,
    /// `{"url","method","headers","body"}` → `{"status","headers","body"}`.
    Fetch,
    /// `{"topic","event"}`: published when the attempt commits.
    Publish,
    /// `{"queue","job"}`: enqueued when the attempt commits.
    Enqueue,
    /// `{}` → milliseconds since the Unix epoch.
    Clock,
    /// `{"bytes"}` → that many random bytes, hex.
    Random,
}

impl Op {
    pub fn from_code(code: i32) -> Option<Op> {
        Some(match code {
            1 => Op::Log,
            2 => Op::StateGet,
            3 => Op::StateGetMany,
            4 => Op::StatePut,
            5 => Op::StateDelete,
            6 => Op::StateList,
            7 => Op::Fetch,
            8 => Op::Publish,
            9 => Op::Enqueue,
            10 => Op::Clock,
            11 => Op::Random,
            _ => return None,
        })
    }
}

/// A guest's `ptr << 32 | len` answer, split.
pub(crate) fn unpack(packed: i64) -> (usize, usize) {
    let bits = packed as u64;
    ((bits >> 32) as usize, (bits & 0xffff_ffff) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_answers_split_into_pointer_and_length() {
        assert_eq!(unpack((0x1234_i64 << 32) | 0x10), (0x1234, 0x10));
        assert_eq!(
            unpack((0xffff_fff0_u64 << 32 | 0xffff_ffff) as i64),
            (0xffff_fff0, 0xffff_ffff)
        );
    }

    #[test]
    fn op_codes_are_the_documented_ones() {
        assert_eq!(Op::from_code(1), Some(Op::Log));
        assert_eq!(Op::from_code(7), Some(Op::Fetch));
        assert_eq!(Op::from_code(11), Some(Op::Random));
        assert_eq!(Op::from_code(0), None);
        assert_eq!(Op::from_code(12), None);
    }
}
