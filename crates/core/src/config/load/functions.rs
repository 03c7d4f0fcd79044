//! The functions available to expressions: `env()` and `file()`.

use super::*;

// Functions available to expressions.

pub(super) struct FnEnv {
    pub(super) base_dir: PathBuf,
    pub(super) env: EnvSource,
}

thread_local! {
    pub(super) static FN_ENV: RefCell<Option<FnEnv>> = const { RefCell::new(None) };
}

pub(super) fn fn_env(args: FuncArgs) -> Result<Value, String> {
    let name = args[0].as_str().unwrap_or_default().to_string();
    FN_ENV.with(|e| {
        let e = e.borrow();
        let e = e.as_ref().ok_or("no environment")?;
        e.env
            .get(&name)
            .map(Value::from)
            .ok_or_else(|| format!("environment variable {} is not set", shown(&name)))
    })
}

/// The largest file `file("…")` reads: a secret, a certificate or a short text. Anything
/// bigger is a mistake (a device, a log, an image), refused before it can exhaust memory.
pub const FILE_MAX_BYTES: u64 = 1 << 20;

pub(super) fn fn_file(args: FuncArgs) -> Result<Value, String> {
    let name = args[0].as_str().unwrap_or_default().to_string();
    FN_ENV.with(|e| {
        let e = e.borrow();
        let e = e.as_ref().ok_or("no environment")?;
        let path = resolve_path(&e.base_dir, &name);
        read_small_file(&path)
            .map(|s| Value::from(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|why| {
                format!(
                    "cannot read {} (relative to the configuration directory): {why}",
                    quote(&name)
                )
            })
    })
}

/// Reads a regular file of at most [`FILE_MAX_BYTES`] bytes as UTF-8 text. A FIFO, a device, a
/// socket or a directory is refused without being opened (opening a FIFO would block), and
/// never more than the limit plus one byte is read, whatever the file claims its size is.
pub(super) fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(kind) = kind {
        return Err(format!("it is {kind}; file() reads only regular files"));
    }
    let too_big = |n: String| {
        format!(
            "it is larger than {} bytes (1 MiB){n}, the limit of file()",
            FILE_MAX_BYTES
        )
    };
    if meta.len() > FILE_MAX_BYTES {
        return Err(too_big(format!(": {} bytes", meta.len())));
    }
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let opened = f.metadata().map_err(|e| e.to_string())?;
    if !opened.is_file() || opened.dev() != meta.dev() || opened.ino() != meta.ino() {
        return Err("it was replaced while being read".into());
    }
    let mut buf = Vec::new();
    f.take(FILE_MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > FILE_MAX_BYTES {
        return Err(too_big(String::new()));
    }
    String::from_utf8(buf).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..valid].iter().filter(|b| **b == b'\n').count() + 1;
        let start = bytes[..valid]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&bytes[start..valid]).chars().count() + 1;
        format!(
            "it is not UTF-8 text: byte 0x{:02X} at line {line}, column {col} is not part of a UTF-8 character",
            bytes[valid]
        )
    })
}

pub(super) fn resolve_path(base: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else if let Some(rest) = name.strip_prefix("~/") {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(rest))
            .unwrap_or_else(|| p.to_path_buf())
    } else {
        base.join(p)
    }
}

pub(super) fn base_context() -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "env",
        FuncDef::builder().param(ParamType::String).build(fn_env),
    );
    ctx.declare_func(
        "file",
        FuncDef::builder().param(ParamType::String).build(fn_file),
    );
    ctx
}
