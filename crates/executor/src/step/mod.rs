//! The steps, one module per group, and the one place a step kind meets its code
//! ([`dispatch`]). Every step is *observe, then act, then wait*: it first checks whether its
//! effect already holds, so running it again (after a crash, on `resume`) is always safe.
//!
//! ```text
//! dispatch(kind, ctx) ─┬─ node     cordon · drain · label · unlabel · restart-agent · reboot ·
//!                      │           restore-cni · uncordon
//!                      ├─ helm     cilium-installed · final-values
//!                      ├─ verify   verify · verify-rollback
//!                      ├─ finale   preflight · node-config · delete-node-config ·
//!                      │           remove-old-cni · final-verify
//!                      └─ eks      patch-aws-node · stop-aws-node · start-aws-node ·
//!                                  restart-unmanaged-pods
//! ```
//!
//! Steps reach the cluster through the `Cluster` trait only, and the run's record through the
//! narrow [`Ledger`] of their [`StepCtx`].

mod ctx;
pub mod eks;
pub mod finale;
pub mod helm;
pub mod node;
pub mod verify;

pub use ctx::{Done, Ledger, Shared, StepCtx};
use planner::StepKind;

use crate::error::StepError;

/// What a step is about to do, said from the same record its action reads: the plan's words,
/// except where the cluster or the checkpoint know better now. On a resumed run the plan is
/// built from a cluster the migration already touched (the node the tool cordoned looks
/// "cordoned before"; the pods on a half-drained node are fewer), so `uncordon` is described
/// from the recorded prior state and `drain` from the pods on the node now.
pub async fn describe(kind: StepKind, ctx: &StepCtx<'_>, planned: &str) -> String {
    match kind {
        StepKind::Uncordon => node::uncordon_description(ctx)
            .await
            .unwrap_or_else(|| planned.to_owned()),
        StepKind::Drain => node::drain_description(ctx, planned)
            .await
            .unwrap_or_else(|| planned.to_owned()),
        _ => planned.to_owned(),
    }
}

/// Runs one step: observe, act, wait.
///
/// # Errors
/// [`StepError`], saying what was expected and what was seen.
pub async fn dispatch(kind: StepKind, ctx: &StepCtx<'_>) -> Result<Done, StepError> {
    match kind {
        StepKind::Preflight => finale::preflight(ctx).await,
        StepKind::PatchAwsNode => eks::patch_aws_node_step(ctx).await,
        StepKind::CiliumInstalled => helm::cilium_installed(ctx).await,
        StepKind::NodeConfig => finale::node_config(ctx).await,
        StepKind::Cordon => node::cordon_step(ctx).await,
        StepKind::Drain => node::drain_step(ctx).await,
        StepKind::Label => node::label_step(ctx, true).await,
        StepKind::Unlabel => node::label_step(ctx, false).await,
        StepKind::StopAwsNode => eks::stop_aws_node_step(ctx).await,
        StepKind::StartAwsNode => eks::start_aws_node_step(ctx).await,
        StepKind::RestartAgent => node::restart_agent_step(ctx).await,
        StepKind::RestartUnmanagedPods => eks::restart_unmanaged_step(ctx).await,
        StepKind::RestoreCni => node::restore_cni_step(ctx).await,
        StepKind::Reboot => node::reboot_step(ctx).await,
        StepKind::Verify => verify::verify(ctx).await,
        StepKind::VerifyRollback => verify::verify_rollback(ctx).await,
        StepKind::Uncordon => node::uncordon_step(ctx).await,
        StepKind::FinalValues => helm::final_values(ctx).await,
        StepKind::DeleteNodeConfig => finale::delete_node_config(ctx).await,
        StepKind::RemoveOldCni => finale::remove_old_cni(ctx).await,
        StepKind::CleanOldCni => finale::clean_old_cni(ctx).await,
        StepKind::FinalVerify => finale::final_verify(ctx).await,
    }
}
