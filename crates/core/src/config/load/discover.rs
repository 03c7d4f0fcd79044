//! Finding and reading the configuration files.

use super::*;

/// The `*.hcl` files a `-c PATH` designates: the file itself, or the directory's `*.hcl`
/// files sorted by name.
pub fn config_files_with(fs: &dyn SourceFs, path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs.metadata(path).map_err(read_error)?;
    if meta.kind == FileKind::File {
        return Ok(vec![path.to_path_buf()]);
    }
    let is_file = |p: &Path| fs.metadata(p).is_ok_and(|m| m.kind == FileKind::File);
    let mut files: Vec<PathBuf> = fs
        .read_dir(path)
        .map_err(read_error)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hcl") && is_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles {
            path: path.to_path_buf(),
        });
    }
    Ok(files)
}

/// Loads the topology at `path` (a file or a directory of `*.hcl`).
///
/// A file that is not UTF-8 is reported at the line and column of its first invalid byte;
/// nothing else is checked then (the rest of the text cannot be trusted).
pub fn load_path_with(fs: &dyn SourceFs, path: &Path, env: EnvSource) -> Result<Loaded, LoadError> {
    let files = config_files_with(fs, path)?;
    let mut sources = Vec::new();
    let mut not_utf8 = Diagnostics::default();
    for f in &files {
        let bytes = fs.read(f).map_err(|source| LoadError::Read {
            path: f.clone(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => sources.push(SourceFile::new(f.clone(), text)),
            Err(e) => {
                let (file, d) = not_utf8_diagnostic(f, e.as_bytes(), e.utf8_error());
                not_utf8.push(d);
                sources.push(file);
            }
        }
    }
    if !not_utf8.is_empty() {
        return Ok(Loaded {
            topology: None,
            diagnostics: not_utf8,
            files: sources,
        });
    }
    let is_dir = fs.metadata(path).is_ok_and(|m| m.kind == FileKind::Dir);
    let base_dir = if is_dir {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    Ok(load_sources_with(
        fs,
        sources,
        &LoadOptions {
            base_dir: Some(base_dir),
            env,
        },
    ))
}

/// The error for a configuration file that is not UTF-8, at its first invalid byte, with the
/// file as text (invalid bytes replaced) to show the line.
pub(super) fn not_utf8_diagnostic(
    path: &Path,
    bytes: &[u8],
    err: std::str::Utf8Error,
) -> (SourceFile, Diagnostic) {
    let valid = err.valid_up_to();
    let bad = bytes.get(valid).copied().unwrap_or(0);
    // The lossy text keeps the valid prefix byte for byte, so `valid` is an offset into it
    // (less the byte order mark SourceFile drops).
    let text = String::from_utf8_lossy(bytes).into_owned();
    let bom = if text.starts_with(crate::config::diag::BOM) {
        crate::config::diag::BOM.len_utf8()
    } else {
        0
    };
    let file = SourceFile::new(path, text);
    let offset = valid - bom.min(valid);
    let d = Diagnostic::at(
        Severity::Error,
        &file,
        offset..offset + 1,
        format!(
            "the file is not UTF-8 text: byte 0x{bad:02X} here is not part of a UTF-8 character; save the file as UTF-8"
        ),
    );
    (file, d)
}
