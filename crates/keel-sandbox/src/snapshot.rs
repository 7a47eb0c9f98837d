//! A pre-initialized JavaScript engine: the engine module rewritten so that
//! its linear memory starts as the memory of an instance whose QuickJS
//! runtime, context and prelude were already made (`keel_js_init`). An
//! invocation then starts from a runtime ready to load bytecode, and the
//! pooling allocator maps that memory copy-on-write.
//!
//! The rewrite is small because the module is ours: its one global, the
//! stack pointer, is back at its initial value once `keel_js_init`
//! returns, so the memory is the whole state. Only the memory section (the
//! minimum size) and the data section (the image's non-zero runs) change.

/// A zero run at least this long ends a data segment.
const GAP: usize = 64;
const PAGE: usize = 65536;

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

fn read_leb(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = *bytes.get(*at).ok_or("a truncated module")?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err("a malformed LEB128".into());
        }
    }
}

/// The data section of `image`: one active segment per non-zero run.
fn data_section(image: &[u8]) -> Vec<u8> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < image.len() {
        if image[i] == 0 {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        while i < image.len() {
            if image[i] != 0 {
                end = i + 1;
                i += 1;
            } else if i - end >= GAP {
                break;
            } else {
                i += 1;
            }
        }
        runs.push((start, end));
    }
    let mut body = Vec::new();
    leb(&mut body, runs.len() as u64);
    for (start, end) in runs {
        body.push(0x00);
        body.push(0x41);
        sleb(&mut body, start as i64);
        body.push(0x0b);
        leb(&mut body, (end - start) as u64);
        body.extend_from_slice(&image[start..end]);
    }
    body
}

/// `module` with its memory starting as `image`.
pub(crate) fn with_memory(module: &[u8], image: &[u8]) -> Result<Vec<u8>, String> {
    if module.len() < 8 || &module[..4] != b"\0asm" {
        return Err("not a WebAssembly module".into());
    }
    let pages = image.len().div_ceil(PAGE) as u64;
    let mut out = module[..8].to_vec();
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = read_leb(module, &mut at)? as usize;
        let body = module.get(at..at + size).ok_or("a truncated section")?;
        at += size;
        let replaced = match id {
            5 => {
                // One memory, no maximum: the engine's, as it is built.
                if !(body.len() >= 3 && body[0] == 0x01 && body[1] == 0x00) {
                    return Err(
                        "the engine's memory section is not one memory without a maximum".into(),
                    );
                }
                let mut b = vec![0x01, 0x00];
                leb(&mut b, pages);
                Some(b)
            }
            11 => Some(data_section(image)),
            12 => return Err("the engine has a data count section".into()),
            _ => None,
        };
        let body = replaced.as_deref().unwrap_or(body);
        out.push(id);
        leb(&mut out, body.len() as u64);
        out.extend_from_slice(body);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_non_zero_runs() {
        let mut image = vec![0u8; 3 * PAGE];
        image[10] = 1;
        image[20] = 2;
        image[PAGE + 5] = 3;
        let body = data_section(&image);
        // Two segments: [10, 21) and [PAGE + 5, PAGE + 6).
        assert_eq!(body[0], 2);
        let mut at = 1;
        let mut segments = Vec::new();
        while at < body.len() {
            assert_eq!(&body[at..at + 2], &[0x00, 0x41]);
            at += 2;
            let mut offset = 0i64;
            let mut shift = 0;
            loop {
                let b = body[at];
                at += 1;
                offset |= i64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    if b & 0x40 != 0 {
                        offset |= -1 << shift;
                    }
                    break;
                }
            }
            assert_eq!(body[at], 0x0b);
            at += 1;
            let len = read_leb(&body, &mut at).unwrap() as usize;
            segments.push((offset as usize, body[at..at + len].to_vec()));
            at += len;
        }
        assert_eq!(segments[0].0, 10);
        assert_eq!(segments[0].1.len(), 11);
        assert_eq!((segments[0].1[0], segments[0].1[10]), (1, 2));
        assert_eq!(segments[1], (PAGE + 5, vec![3]));
    }
}
