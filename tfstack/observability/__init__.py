"""tfstack's observability tooling: local Prometheus, dashboard queries and rendering.

The rules, dashboards and adapter rules themselves live in the chart (`charts/tfstack/files/`) and
`k8s/prometheus-adapter/`; docs/metrics.md is the contract they follow.
"""
