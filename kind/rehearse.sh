#!/usr/bin/env bash
# Rehearse the whole migration on a real kind cluster: Flannel first, sample workloads with
# PDBs, a connectivity monitor, then `cni-migrate apply` to Cilium with `docker restart` as the
# reboot hook, finalize, and the monitor's loss figures.
#
# Needs: docker (a running engine), kind, kubectl, helm, and cni-migrate on PATH (or CNI_MIGRATE).
# CI has no Docker engine: it runs this script with --dry-run, which prints every command
# without running any of them.
#
# Usage: kind/rehearse.sh [--dry-run] [--keep]
#   --dry-run  print the commands only
#   --keep     leave the cluster up afterwards (tear down with kind/teardown.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER="${CLUSTER:-cni-migrate}"
WORK="${WORK:-${HERE}/../target/kind-rehearsal}"
CNI_MIGRATE="${CNI_MIGRATE:-cni-migrate}"
# Pinned versions.
FLANNEL_VERSION="v0.26.1"
CILIUM_VERSION="1.17.3"
FLANNEL_MANIFEST="https://github.com/flannel-io/flannel/releases/download/${FLANNEL_VERSION}/kube-flannel.yml"
CNI_PLUGINS_MANIFEST="https://raw.githubusercontent.com/cilium/cilium/v${CILIUM_VERSION}/examples/misc/migration/install-reference-cni-plugins.yaml"

DRY_RUN=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

# Prints a command, then runs it unless this is a dry run.
run() {
  printf '+ %s\n' "$*"
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}

# Like run, with stdout sent to a file.
run_to() {
  local out="$1"
  shift
  printf '+ %s > %s\n' "$*" "$out"
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@" >"$out"
  fi
}

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [[ "$DRY_RUN" == 1 ]]; then
      echo "# note: $1 is not installed here (fine for a dry run)"
    else
      echo "error: $1 is required: $2" >&2
      exit 2
    fi
  fi
}

need docker "install Docker and start its engine"
need kind "see https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "see https://kubernetes.io/docs/tasks/tools/"
need helm "see https://helm.sh/docs/intro/install/"
need "$CNI_MIGRATE" "build it with: cargo build --release -p cni-migrate (then set CNI_MIGRATE=target/release/cni-migrate)"

teardown() {
  if [[ "$KEEP" == 0 ]]; then
    if [[ "$DRY_RUN" == 1 ]]; then
      "${HERE}/teardown.sh" --dry-run
    else
      "${HERE}/teardown.sh"
    fi
  fi
}
trap teardown EXIT

run mkdir -p "$WORK"

echo "== 1. kind cluster with Flannel"
run kind create cluster --name "$CLUSTER" --config "${HERE}/cluster.yaml" --wait 2m
run kubectl apply -f "$CNI_PLUGINS_MANIFEST"
run kubectl apply -f "$FLANNEL_MANIFEST"
run kubectl -n kube-flannel rollout status ds/kube-flannel-ds --timeout=5m
run kubectl wait --for=condition=Ready nodes --all --timeout=5m

echo "== 2. workloads and the connectivity monitor"
run kubectl apply -f "${HERE}/workloads.yaml"
run kubectl apply -f "${HERE}/monitor.yaml"
run kubectl -n shop rollout status deploy/frontend --timeout=5m
run kubectl -n cni-migrate-monitor rollout status ds/monitor --timeout=5m

echo "== 3. plan"
run_to "$WORK/dump.json" kubectl get nodes,pods,pdb,ds,deploy,rs,sts,cm,svc,netpol,ns -A -o json
run "$CNI_MIGRATE" plan --spec "${HERE}/spec.yaml" --from-dump "$WORK/dump.json" --out-dir "$WORK/plan"

echo "== 4. migrate (Cilium installed in migration mode by the executor through helm)"
run helm repo add cilium https://helm.cilium.io/ --force-update
run "$CNI_MIGRATE" apply --spec "${HERE}/spec.yaml" --helm helm --yes --state "file:$WORK/state.json" --stop-before finalize
echo "== 5. finalize"
run "$CNI_MIGRATE" resume --spec "${HERE}/spec.yaml" --helm helm --yes --state "file:$WORK/state.json"

echo "== 6. connectivity during the migration"
run_to "$WORK/monitor.log" kubectl -n cni-migrate-monitor logs -l app=cni-migrate-monitor --prefix --tail=-1
if [[ "$DRY_RUN" == 0 ]]; then
  awk '$1 ~ /PROBE/ || $2 == "PROBE" {
         for (i = 1; i <= NF; i++) { if ($i ~ /^ok=/) ok += substr($i, 4); if ($i ~ /^fail=/) fail += substr($i, 6) }
       }
       END { total = ok + fail; printf "probes: %d, failed: %d (%.3f%% loss)\n", total, fail, total ? 100 * fail / total : 0 }' \
    "$WORK/monitor.log" | tee "$WORK/loss.txt"
fi
echo "== done: artifacts in $WORK"
