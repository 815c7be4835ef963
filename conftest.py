"""Root conftest: the lab's pytest plugin (fixtures `lab`, `history`, `client_identity`, ...)."""

pytest_plugins = ["zt.lab.pytest_plugin"]
