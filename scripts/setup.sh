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
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || need_apt+=(e2fsprogs)  # each sandbox's workdir file system
command -v node >/dev/null || need_apt+=(nodejs)   # Node fetch in the HTTP-inspection e2e test
command -v npm >/dev/null || need_apt+=(npm)
command -v tmux >/dev/null || need_apt+=(tmux)   # the e2e test that runs `openshell term` in a real terminal
# the docker compute driver: its private engine, the default image's root file
# system (debootstrap), the supervisor's relocatable runtime (patchelf)
command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || need_apt+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v patchelf >/dev/null || need_apt+=(patchelf)
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)  # the e2e test of an image whose C library is musl
[ -e /usr/lib/x86_64-linux-gnu/libseccomp.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libseccomp.so.2 ] || need_apt+=(libseccomp2)
# Another apt/dpkg run (unattended-upgrades, a second terminal) holds the dpkg
# lock for a while: wait for it, bounded, instead of failing at once.
wait_for_apt() {
  local waited=0 limit=${OPENSHELL_APT_WAIT:-300}
  while ! python3 - "${OPENSHELL_APT_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock}" <<'PY'
import fcntl, sys
for path in sys.argv[1].split():
    try:
        with open(path, "a") as f:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        continue
    except OSError:
        sys.exit(1)
PY
  do
    if [ "$waited" -eq 0 ]; then echo "==> another apt/dpkg run holds its lock; waiting up to ${limit}s"; fi
    if [ "$waited" -ge "$limit" ]; then
      echo "setup: the apt/dpkg lock is still held after ${limit}s (see 'ps -C apt-get,dpkg,unattended-upgr'); run again when it is done" >&2
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> apt-get install ${need_apt[*]}"
  wait_for_apt
  apt_opts=(-o DPkg::Lock::Timeout="${OPENSHELL_APT_WAIT:-300}")
  apt-get "${apt_opts[@]}" update -qq && DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi

dists=(-e openshell-core)
for d in openshell-plugins/isolation/*/; do dists+=(-e "$d"); done
dists+=(-e openshell-cli)
for d in openshell-plugins/agents/*/ openshell-plugins/inference/*/ openshell-plugins/drivers/*/; do
  [ -f "$d/pyproject.toml" ] && dists+=(-e "$d")
done
tools=(nox "pytest>=8" pytest-timeout pexpect ruff "grpcio-tools==1.85.1" "mypy>=1.10" types-PyYAML types-protobuf types-paramiko grpc-stubs)

# Editable installs follow source edits by themselves; only a change of the
# distributions' metadata, this script or the interpreter needs a reinstall.
stamp_file=.venv/.openshell-setup
stamp=$( { .venv/bin/python --version; printf '%s\n' "${dists[@]}" "${tools[@]}"; cat scripts/setup.sh; \
           for d in "${dists[@]}"; do [ "$d" = -e ] || cat "$d/pyproject.toml"; done; } | sha256sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && .venv/bin/openshell --version >/dev/null 2>&1; then
  echo "==> .venv is up to date: $(.venv/bin/openshell --version)"
  exit 0
fi

echo "==> installing OpenShell into .venv"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q "${dists[@]}" "${tools[@]}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/openshell --version >/dev/null  # fail here, not later, when the install did not work
echo "$stamp" > "$stamp_file"
echo "==> ready: $(.venv/bin/openshell --version)"
