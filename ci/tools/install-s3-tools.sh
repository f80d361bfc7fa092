#!/usr/bin/env bash
# Installs, in a venv of their own (.tools/s3/), the two S3 tools the chart's S3 model source is
# tested with (tests/chart/test_s3_source.py):
#   .tools/bin/aws          -> AWS CLI (v1 from PyPI; the chart's init container runs the v2 image,
#                              and the commands the chart renders, `aws s3 sync` and
#                              `aws configure set`, take the same arguments in both)
#   .tools/bin/moto_server  -> moto's S3-compatible server, run on loopback by the test
# Their own venv keeps botocore's pins away from the project's. Idempotent (a stamp of the pins).
set -euo pipefail
cd "$(dirname "$0")/../.."

# moto's S3 extra and the server's own two dependencies, not moto[server] (every AWS service's
# dependencies: ~480 MB and minutes to install, against ~300 MB and under a minute).
PINS=(awscli==1.46.2 botocore==1.44.8 boto3==1.44.8 "moto[s3]==5.2.5" Flask==3.1.3 flask-cors==6.0.5 Werkzeug==3.1.9)
venv=.tools/s3
stamp="$venv/.pins"
want="${PINS[*]}"

if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$venv/bin/aws" ] && [ -x "$venv/bin/moto_server" ]; then
  echo "install-s3-tools: ${PINS[*]} already in $venv"
else
  echo "install-s3-tools: installing ${PINS[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
  echo "$want" > "$stamp"
fi
mkdir -p .tools/bin
ln -sfn ../s3/bin/aws .tools/bin/aws
ln -sfn ../s3/bin/moto_server .tools/bin/moto_server
