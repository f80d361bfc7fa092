#!/usr/bin/env bash
# Linters over the whole tree: ruff (Python), shellcheck (shell), hadolint (Dockerfiles),
# yamllint (hand-written YAML; Helm templates are linted by helm itself in tests/chart), actionlint
# (GitHub workflows, with shellcheck over their `run:` scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"

echo "ruff: $(ruff --version)"
ruff check .

mapfile -t scripts < <(git ls-files -co --exclude-standard '*.sh' '.ci/run' | sort -u)
echo "shellcheck: ${#scripts[@]} scripts"
[ "${#scripts[@]}" -eq 0 ] || shellcheck "${scripts[@]}"

mapfile -t dockerfiles < <(git ls-files -co --exclude-standard '*Dockerfile*' | sort -u)
echo "hadolint: ${#dockerfiles[@]} Dockerfiles"
[ "${#dockerfiles[@]}" -eq 0 ] || hadolint "${dockerfiles[@]}"

mapfile -t yamls < <(git ls-files -co --exclude-standard '*.yaml' '*.yml' \
  | grep -v '^charts/.*/templates/' | sort -u)
echo "yamllint: ${#yamls[@]} files"
[ "${#yamls[@]}" -eq 0 ] || yamllint -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}' "${yamls[@]}"

mapfile -t workflows < <(git ls-files -co --exclude-standard '.github/workflows/*.yaml' '.github/workflows/*.yml' | sort -u)
echo "actionlint: ${#workflows[@]} workflows"
[ "${#workflows[@]}" -eq 0 ] || actionlint "${workflows[@]}"
