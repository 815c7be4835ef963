"""Authorisation only: who may get what (tokens, renewal proof), the HTTP API, and the store.

The RA decides and records; zt.ca signs. Several RA worker processes can serve one CA: all
shared state lives in the SQLite store, and every decision that consumes something (a token,
a renewal nonce, a CRL number) happens inside one write transaction.
"""
