//! The `k3splan` binary: a thin wrapper over the library (`k3splan::cli`).
fn main() -> std::process::ExitCode {
    k3splan::cli::run()
}
