"""The CRL publisher: serves the CRL that the CA side writes; holds no key."""
