//! `cni-migrate`: see the crate documentation of `cni_migrate`.
fn main() -> std::process::ExitCode {
    cni_migrate::main()
}
