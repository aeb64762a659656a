#!/usr/bin/env bash
# Deletes the rehearsal's kind cluster. Usage: kind/teardown.sh [--dry-run]
set -euo pipefail
CLUSTER="${CLUSTER:-cni-migrate}"
if [[ "${1:-}" == "--dry-run" ]]; then
  printf '+ %s\n' "kind delete cluster --name $CLUSTER"
  exit 0
fi
kind delete cluster --name "$CLUSTER"
