"""Shared PKI vocabulary that every side may import: keys, PEM/serial encoding, CRL fields,
and the renewal-proof protocol (made by the agent, verified by the RA).

Why a package of its own: the agent must not import the CA (which signs) or the RA (which
decides); both sides still need one definition of a key type, a PEM encoding and the proof
format. Nothing here holds a CA key or decides anything; `make lint` keeps it that way.
"""
