"""Proof certificates of ``unsat`` answers: what the searches record and the file they write.

:class:`~verifier.certificate.log.ProofLog` records one tree as a search builds it (an
input-split search's boxes, or one clause's ReLU splits with the leaves' slopes and
multipliers); :mod:`~verifier.certificate.claims` keeps what a region's root bounds rest on
(the intermediate bounds, with the slopes that prove them, and the final rows' alpha slopes);
:class:`~verifier.certificate.writer.Recorder` follows a run and writes the file that
``verify-check`` (the separate package :mod:`verify_check`, which does not import this one)
reads. The format is specified in :mod:`verify_check.certificate` and the README.
"""
