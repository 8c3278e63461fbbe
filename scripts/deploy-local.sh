#!/usr/bin/env bash
# Deploy TZR Host on this machine in test mode: install the pinned Ansible
# tools into .venv-ops (the `ops` extra of setup.cfg, without the
# application), then run playbooks/deploy.yml against inventory/local.
# Runs as root. Extra arguments go to ansible-playbook (for example
# --check --diff, or --tags role::tzr_services).
#
# Only committed files are deployed. Generated secrets go to
# ~/.config/tzr-host/secrets/local (TZR_SECRETS_DIR moves them).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
venv=${TZR_OPS_VENV:-.venv-ops}

if [ "$(id -u)" != 0 ]; then
    echo "error: run as root: the deployment creates an account, folders under /opt, /etc and /var, and databases" >&2
    exit 2
fi

if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
# The pins of setup.cfg's `ops` extra, installed alone: the Ansible machine
# does not need the application's dependencies.
mapfile -t requirements < <("$venv/bin/python" - <<'PY'
import configparser
parser = configparser.ConfigParser()
parser.read("setup.cfg")
for line in parser["options.extras_require"]["ops"].splitlines():
    if line.strip():
        print(line.strip())
PY
)
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"

export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
# Modules run without copying a file per task first.
export ANSIBLE_PIPELINING=${ANSIBLE_PIPELINING:-1}
exec "$venv/bin/ansible-playbook" -i inventory/local playbooks/deploy.yml "$@"
