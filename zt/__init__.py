"""zt: a zero-trust mTLS lab. The PKI core, the RA, the CRL publisher, the agent and the CLI."""

__version__ = "0.1.0"
