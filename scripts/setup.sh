#!/usr/bin/env bash
# Install everything OpenShell needs on a fresh Debian machine (root): system
# packages, then a virtualenv at .venv with every first-party distribution
# installed editable. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v curl >/dev/null || need_apt+=(curl)
command -v ssh >/dev/null || need_apt+=(openssh-client)
[ -x /usr/lib/openssh/sftp-server ] || need_apt+=(openssh-sftp-server)  # sftp/scp into sandboxes
command -v useradd >/dev/null || need_apt+=(passwd)
command -v node >/dev/null || need_apt+=(nodejs)   # Node fetch in the HTTP-inspection e2e test
command -v npm >/dev/null || need_apt+=(npm)
[ -e /usr/lib/x86_64-linux-gnu/libseccomp.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libseccomp.so.2 ] || need_apt+=(libseccomp2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing OpenShell into .venv"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
dists=(-e openshell-core)
for d in openshell-plugins/isolation/*/; do dists+=(-e "$d"); done
dists+=(-e openshell-cli)
for d in openshell-plugins/agents/*/ openshell-plugins/inference/*/; do
  [ -f "$d/pyproject.toml" ] && dists+=(-e "$d")
done
.venv/bin/python -m pip install -q "${dists[@]}" nox "pytest>=8" pytest-timeout pexpect ruff "grpcio-tools==1.85.1" 2>&1 | grep -v "^WARNING: Location" || true
echo "==> ready: $(.venv/bin/openshell --version)"
