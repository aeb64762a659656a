//! `kubectl cni-migrate`: kubectl finds plugins named `kubectl-<name>` on the PATH, with the
//! dashes of the command written as underscores.
fn main() -> std::process::ExitCode {
    cni_migrate::main()
}
