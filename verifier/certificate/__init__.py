"""Proof certificates of ``unsat`` answers: what the searches record and the file they write.

:class:`~verifier.certificate.log.ProofLog` records one region's input-split tree as the
search builds it; :func:`~verifier.certificate.writer.write_certificate` writes the file that
``verify-check`` (the separate package :mod:`verify_check`, which does not import this one)
reads. The format is specified in :mod:`verify_check.certificate` and the README.
"""
