"""tfstack: a Kubernetes-deployable serving stack for TensorFlow models (README.md).

One version names the package, the gateway and models images and the Helm chart: pyproject.toml,
this `__version__` and Chart.yaml's version and appVersion agree (tests/unit/test_version.py), and
the release workflow checks its tag against Chart.yaml.
"""

__version__ = "0.1.0"
