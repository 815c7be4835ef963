"""The lab harness: topology, runtimes (processes, containers), clients, checkers, reports."""
