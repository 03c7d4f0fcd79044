//! Issue 13, point 7: hostile input to the topology language. Each test runs the binary as an
//! operator would (`k3splan validate -c FILE`) where the output is what matters, and checks
//! the exit code, that nothing panicked, that stderr stays small, and the `file:line:col` of
//! the diagnostic.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use k3splan::config::{SourceFile, load_str};

/// A valid topology (the token comes from the environment set by [`validate`]).
const VALID: &str = r#"cluster "lab" {
  token = env("K3S_TOKEN")
}

node "s1" {
  address = "10.0.0.1"
  roles   = ["server"]
}
"#;

/// Runs `k3splan validate -c PATH`, killing it after a generous deadline (a hang is a failure,
/// not a wait).
fn validate(path: &Path) -> Output {
    let mut child = common::k3splan()
        .args(["validate", "-c"])
        .arg(path)
        .env("K3S_TOKEN", "K10-test-token")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "k3splan validate {} did not finish in 120 s; stderr: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The checks every bad input shares: exit 1, no panic, a bounded stderr, and returns it.
fn rejected(path: &Path) -> String {
    let o = validate(path);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !err.contains("panicked"),
        "k3splan panicked: {}",
        &err[..err.len().min(4000)]
    );
    assert!(
        err.len() < 16 * 1024,
        "stderr is {} bytes: {}…",
        err.len(),
        &err[..err.len().min(2000)]
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    err
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// -- A UTF-8 byte order mark; byte/char slicing ------------------------------------------------

#[test]
fn issue13_bom_at_the_start_of_a_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "t.hcl", format!("\u{feff}{VALID}").as_bytes());
    let o = validate(&f);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Success!"));

    // With an error on the first line, the position ignores the mark: line 1, column 1.
    let bad = VALID.replacen("cluster", "clustr", 1);
    let f = write(dir.path(), "b.hcl", format!("\u{feff}{bad}").as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:1:1: error: unknown block type `clustr`",
            f.display()
        )),
        "{err}"
    );
    // A syntax error in a file with a mark is at the right place too.
    let f = write(
        dir.path(),
        "s.hcl",
        "\u{feff}node \"a\" {\n  x = \n}\n".as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!("{}:2:7: error: syntax error", f.display())),
        "{err}"
    );
}

#[test]
fn issue13_bom_is_kept_by_fmt() {
    let src = format!("\u{feff}{}", VALID.replace("roles   =", "roles="));
    let out = k3splan::config::fmt::format_source(&src).expect("a file with a BOM formats");
    assert_eq!(out, format!("\u{feff}{VALID}"));
}

/// The class: a syntax error at (or just before) any multi-byte character never panics and
/// points at a real character. Every prefix of a file full of multi-byte characters is loaded,
/// and every position gets a 3-byte and a 4-byte character inserted.
#[test]
fn issue13_syntax_errors_at_multibyte_characters_never_panic() {
    let src = "\u{feff}cluster \"lab\" { # é€😀\n  token = env(\"K3S_TOKEN\") /* ü */\n}\nnode \"ß\" {\n  address = \"10.0.0.1\" // 😀\n  roles   = [\"server\", \"€\"]\n  labels  = { \"é\" = \"😀\" }\n}\n";
    let mut inputs = Vec::new();
    for (i, _) in src.char_indices() {
        inputs.push(src[..i].to_string());
        for c in ["€", "😀", "\u{feff}"] {
            inputs.push(format!("{}{c}{}", &src[..i], &src[i..]));
        }
    }
    for input in inputs {
        let loaded = std::panic::catch_unwind(|| load_str("t.hcl", &input))
            .unwrap_or_else(|_| panic!("loading panicked on {input:?}"));
        for d in loaded.diagnostics.iter() {
            let text = d.render(false);
            assert!(d.line >= 1 || d.message.contains("cluster"), "{text}");
            assert!(text.len() < 2000, "{text}");
        }
    }
    // Positions count characters, after the mark.
    let f = SourceFile::new("t.hcl", "\u{feff}é = 1\n");
    assert_eq!(f.line_col(0), (1, 1));
    assert_eq!(
        f.line_col(1),
        (1, 1),
        "an offset inside a character is that character"
    );
    assert_eq!(f.line_col(2), (1, 2));
}

// -- file() -----------------------------------------------------------------------------------

fn node_with(address_expr: &str) -> String {
    format!(
        "cluster \"lab\" {{\n  token = env(\"K3S_TOKEN\")\n}}\n\nnode \"s1\" {{\n  address = {address_expr}\n  roles   = [\"server\"]\n}}\n"
    )
}

#[test]
fn issue13_file_of_a_device_is_refused_at_the_call() {
    let dir = tempfile::tempdir().unwrap();
    // At the call, also inside a larger expression (column 17: the `file(` in the template).
    let f = write(
        dir.path(),
        "t.hcl",
        node_with("\"x${file(\"/dev/zero\")}\"").as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:17: error: file(): cannot read \"/dev/zero\"",
            f.display()
        )) && err.contains("it is a character device; file() reads only regular files"),
        "{err}"
    );
    // Of two calls, the failing one (column 29).
    write(dir.path(), "ok", b"10.0.0.1");
    let f = write(
        dir.path(),
        "two.hcl",
        node_with("\"${file(\"ok\")}${file(\"/dev/zero\")}\"").as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:29: error: file(): cannot read \"/dev/zero\"",
            f.display()
        )),
        "{err}"
    );
    // A secret read from a device is refused the same way (the token path).
    let f = write(
        dir.path(),
        "s.hcl",
        VALID
            .replace("env(\"K3S_TOKEN\")", "file(\"/dev/zero\")")
            .as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!("{}:2:11: error: file(): cannot read", f.display()))
            && err.contains("character device"),
        "{err}"
    );
}

#[test]
fn issue13_file_of_a_fifo_or_a_directory_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let f = write(dir.path(), "t.hcl", node_with("file(\"pipe\")").as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:13: error: file(): cannot read \"pipe\"",
            f.display()
        )) && err.contains("it is a FIFO (named pipe); file() reads only regular files"),
        "{err}"
    );
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let f = write(dir.path(), "d.hcl", node_with("file(\"sub\")").as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:13: error: file(): cannot read \"sub\"",
            f.display()
        )) && err.contains("it is a directory"),
        "{err}"
    );
}

#[test]
fn issue13_file_larger_than_1_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![b'a'; (1 << 20) + 1];
    write(dir.path(), "big", &big);
    let f = write(dir.path(), "t.hcl", node_with("file(\"big\")").as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:13: error: file(): cannot read \"big\"",
            f.display()
        )) && err.contains("larger than 1048576 bytes (1 MiB)"),
        "{err}"
    );
    // Exactly 1 MiB is read (and is then a bad address, reported in a few hundred bytes).
    write(dir.path(), "big", &big[..1 << 20]);
    let err = rejected(&f);
    assert!(err.contains("invalid IP address \"aaaa"), "{err}");
    assert!(err.contains("…\" (1048576 bytes)"), "{err}");
}

#[test]
fn issue13_file_that_is_not_utf8_names_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bin", b"ok\nab\xffc\n");
    let f = write(dir.path(), "t.hcl", node_with("file(\"bin\")").as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:13: error: file(): cannot read \"bin\"",
            f.display()
        )) && err.contains("byte 0xFF at line 2, column 3"),
        "{err}"
    );
}

// -- Long values in diagnostics ---------------------------------------------------------------

#[test]
fn issue13_huge_bad_value_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(4 << 20);
    let f = write(
        dir.path(),
        "t.hcl",
        node_with(&format!("\"{huge}\"")).as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:6:13: error: node \"s1\": invalid IP address \"{}…\" ({} bytes)",
            f.display(),
            "x".repeat(60),
            4 << 20
        )),
        "{err}"
    );
}

/// The class: every diagnostic that quotes a value or a name from the input stays short, and
/// the source line under it is a window around the column.
#[test]
fn issue13_every_quoted_value_is_truncated() {
    let long = "Z".repeat(100_000);
    let cluster = "cluster \"lab\" {\n  token = env(\"K3S_TOKEN\")\n}\n";
    let node = |name: &str, body: &str| format!("node \"{name}\" {{\n{body}\n}}\n");
    let ok_node = |extra: &str| {
        node(
            "s1",
            &format!("  address = \"10.0.0.1\"\n  roles = [\"server\"]\n{extra}"),
        )
    };
    let cases: Vec<String> = vec![
        format!(
            "{cluster}{}",
            node(&long, "  address = \"10.0.0.1\"\n  roles = [\"server\"]")
        ),
        format!(
            "{cluster}{}",
            node(
                "s1",
                &format!("  address = \"10.0.0.1\"\n  roles = [\"{long}\"]")
            )
        ),
        format!("{cluster}{}", ok_node(&format!("  taints = [\"{long}\"]"))),
        format!("{cluster}{}", ok_node(&format!("  {long} = 1"))),
        format!("{cluster}{}", ok_node(&format!("  {long} {{\n  }}"))),
        format!(
            "{cluster}{}",
            ok_node(&format!("  labels = {{ a = [\"{long}\"] }}"))
        ),
        format!(
            "{cluster}{}",
            ok_node(&format!("  vip_priority = \"{long}\" + 1"))
        ),
        format!(
            "{cluster}{}",
            ok_node(&format!("  vip_priority = local.{long}"))
        ),
        format!(
            "{cluster}{}",
            ok_node(&format!("  vip_priority = {long}()"))
        ),
        format!(
            "cluster \"lab\" {{\n  token = env(\"K3S_TOKEN\")\n  data_dir = \"{long}\"\n  k3s_version = \"{long}\"\n  api_endpoint = \"{long}\"\n}}\n{}",
            ok_node("")
        ),
        format!(
            "cluster \"lab\" {{\n  token = env(\"K3S_TOKEN\")\n  vip {{\n    address = \"{long}\"\n    interface = \"{long}\"\n    router_id = 1\n  }}\n}}\n{}",
            ok_node("")
        ),
        format!(
            "{cluster}{}storage \"{long}\" {{\n  kind = \"{long}\"\n}}\n",
            ok_node("")
        ),
        format!(
            "{cluster}{}storage \"a/b\" {{\n  kind = \"StatefulSet\"\n  on_node_loss = \"{long}\"\n  prefer_nodes = [\"{long}\"]\n}}\n",
            ok_node("")
        ),
        format!("{cluster}{}backend \"{long}\" {{\n}}\n", ok_node("")),
        format!(
            "{cluster}{}addon \"{long}\" {{\n  replicas = 1\n  spread = \" {long}\"\n}}\n",
            ok_node("")
        ),
        format!("{cluster}{}variable \"{long}\" {{\n}}\n", ok_node("")),
        format!("{cluster}{}{long}\n", ok_node("")),
    ];
    for (i, src) in cases.iter().enumerate() {
        let loaded = load_str("t.hcl", src);
        assert!(loaded.diagnostics.has_errors(), "case {i}: no error");
        for d in loaded.diagnostics.iter() {
            let text = d.render(false);
            assert!(
                text.len() < 1000,
                "case {i}: a {}-byte diagnostic: {}…",
                text.len(),
                &text[..text.len().min(600)]
            );
        }
    }
}

// -- Cycles -------------------------------------------------------------------------------------

#[test]
fn issue13_circular_locals_are_reported_as_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        "locals {{\n  a = local.b\n  b = \"${{local.c}}-x\"\n  c = local.a\n  d = local.a\n}}\n\n{}",
        node_with("local.d")
    );
    let f = write(dir.path(), "t.hcl", src.as_bytes());
    let err = rejected(&f);
    let loc = format!("{}:", f.display());
    assert!(
        err.contains(&format!(
            "{loc}2:7: error: cycle: local.a → local.b → local.c → local.a"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("local.b refers to local.c at {loc}3:10")),
        "{err}"
    );
    assert!(
        err.contains(&format!("local.c refers to local.a at {loc}4:7")),
        "{err}"
    );
    assert!(
        !err.contains("not defined") && !err.contains("undefined"),
        "{err}"
    );
    assert_eq!(
        err.matches(": error: ").count(),
        1,
        "one error, no follow-ons: {err}"
    );

    // A local referring to itself.
    let src = format!("locals {{\n  a = [local.a]\n}}\n\n{}", node_with("local.a"));
    let f = write(dir.path(), "s.hcl", src.as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:2:8: error: cycle: local.a → local.a",
            f.display()
        )),
        "{err}"
    );
    assert!(!err.contains("undefined"), "{err}");
}

#[test]
fn issue13_self_referencing_variable_is_reported_as_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        "variable \"addr\" {{\n  default = var.addr\n}}\n\n{}",
        node_with("var.addr")
    );
    let f = write(dir.path(), "t.hcl", src.as_bytes());
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:2:13: error: cycle: var.addr → var.addr",
            f.display()
        )),
        "{err}"
    );
    assert!(!err.contains("undefined"), "{err}");
    assert_eq!(
        err.matches(": error: ").count(),
        1,
        "one error, no follow-ons: {err}"
    );
}

// -- Numbers out of range -----------------------------------------------------------------------

fn with_router_id(v: &str) -> String {
    format!(
        "cluster \"lab\" {{\n  token = env(\"K3S_TOKEN\")\n\n  vip {{\n    address   = \"10.0.0.100\"\n    interface = \"eth0\"\n    router_id = {v}\n  }}\n}}\n\nnode \"s1\" {{\n  address = \"10.0.0.1\"\n  roles   = [\"server\"]\n  primary = true\n}}\n"
    )
}

#[test]
fn issue13_number_literal_out_of_range_names_the_attribute() {
    let dir = tempfile::tempdir().unwrap();
    for lit in ["1e400", "-1e400", &"9".repeat(400)] {
        let f = write(dir.path(), "t.hcl", with_router_id(lit).as_bytes());
        let err = rejected(&f);
        assert!(
            err.contains(&format!("{}:7:17: error: number `", f.display()))
                && err.contains("is out of range for `router_id`"),
            "{lit}: {err}"
        );
        assert!(!err.contains("expected newline"), "{err}");
    }
    // Too large for a 64-bit integer, but a valid number: out of range, shown as written.
    let f = write(
        dir.path(),
        "t.hcl",
        with_router_id("99999999999999999999").as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:7:17: error: `router_id` must be from 1 to 255, found 99999999999999999999",
            f.display()
        )),
        "{err}"
    );
    let f = write(
        dir.path(),
        "t.hcl",
        with_router_id("18446744073709551615").as_bytes(),
    );
    let err = rejected(&f);
    assert!(
        err.contains("`router_id` must be from 1 to 255, found 18446744073709551615"),
        "{err}"
    );
}

// -- Not UTF-8 ----------------------------------------------------------------------------------

#[test]
fn issue13_non_utf8_file_gets_the_byte_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"cluster \"lab\" {\n  token = env(\"K3S_TOKEN\")\n}\n# caf");
    bytes.push(0xe9); // Latin-1 é
    bytes.extend_from_slice(b"\n");
    let f = write(dir.path(), "t.hcl", &bytes);
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:4:6: error: the file is not UTF-8 text: byte 0xE9",
            f.display()
        )),
        "{err}"
    );
    // The same after a byte order mark and multi-byte characters on the line.
    let mut bytes = "\u{feff}# é€ ".as_bytes().to_vec();
    bytes.push(0xff);
    let f = write(dir.path(), "b.hcl", &bytes);
    let err = rejected(&f);
    assert!(
        err.contains(&format!(
            "{}:1:6: error: the file is not UTF-8",
            f.display()
        )),
        "{err}"
    );
    // In a directory, the file is named.
    let sub = dir.path().join("d");
    std::fs::create_dir(&sub).unwrap();
    write(&sub, "a.hcl", VALID.as_bytes());
    let mut w = std::fs::File::create(sub.join("b.hcl")).unwrap();
    w.write_all(b"\x80").unwrap();
    drop(w);
    let err = rejected(&sub);
    assert!(
        err.contains(&format!(
            "{}:1:1: error: the file is not UTF-8",
            sub.join("b.hcl").display()
        )),
        "{err}"
    );
}
