//! The one place where values become shell words.
//!
//! Every value k3splan sends to a remote shell goes through [`sh_quote`] (one word) or
//! [`sh_command`] (an argv). POSIX single quotes make every byte literal except `'` itself,
//! which is written as `'\''`. Nothing else is special inside single quotes: `$`, backticks,
//! `\`, `;`, `"`, newlines and glob characters all arrive verbatim.

/// Quotes one value as a single POSIX shell word.
///
/// Guarantee: for every string `s` (including empty, newlines, quotes, `$(…)`), a POSIX shell
/// parses `sh_quote(s)` back into exactly one word equal to `s`. NUL bytes cannot be passed
/// through a shell at all; they are rejected by the callers that take arbitrary bytes (file
/// contents travel on stdin instead).
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Builds a command line from an argv, quoting every element (the program included).
pub fn sh_command<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| sh_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sh -c <script> sh <args…>`: runs a constant script with values as positional parameters
/// (`$1`, `$2`, …), the safest way to combine fixed logic with untrusted values.
pub fn sh_script_command<S: AsRef<str>>(script: &str, args: &[S]) -> String {
    let mut argv: Vec<&str> = vec!["sh", "-c", script, "sh"];
    argv.extend(args.iter().map(|a| a.as_ref()));
    sh_command(&argv)
}

/// `export NAME='value'` lines for a script sent on stdin. Names must be shell identifiers.
pub(crate) fn export_line(name: &str, value: &str) -> String {
    debug_assert!(is_identifier(name), "not an env var name: {name}");
    format!("export {name}={}\n", sh_quote(value))
}

/// Whether `name` is a valid shell variable name.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_closed_and_reopened() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_command(&["a b", "$(x)"]), "'a b' '$(x)'");
    }

    #[test]
    fn local_sh_reads_hostile_words_back_verbatim() {
        let hostile = [
            "plain",
            "",
            "it's",
            "''",
            "$(touch /tmp/k3splan-pwned)",
            "`id`",
            "a;b && c || d | e",
            "line1\nline2\n",
            "\"double\" \\back\\slash $HOME ${PATH} * ? [a]",
            "-n",
            "tab\there",
        ];
        for h in hostile {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", sh_quote(h)))
                .output()
                .expect("run sh");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), h, "value {h:?}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("K3S_TOKEN"));
        assert!(!is_identifier("1A"));
        assert!(!is_identifier("A-B"));
        assert!(!is_identifier(""));
    }
}
