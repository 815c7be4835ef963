"""Signing only: certificate profiles, issuing from a public key, building CRLs.

The CA never decides who may get what (that is the RA's job, zt.ra); it signs what it is
given within its profiles and caps every lifetime to its own.
"""
