"""OpenShell: a safe runtime for autonomous AI agents."""

__version__ = "0.1.0"
