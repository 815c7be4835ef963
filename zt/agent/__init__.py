"""The node agent: keys born here, CSRs, bootstrap and renewal, atomic writes, reload signals,
CRL fetching. Its output directory is the contract with the services (docs/contracts.md)."""
