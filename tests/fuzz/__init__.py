"""Fuzzing harness for the ``verify`` command line (see ``runner.py``; CI slice in
``test_fuzz_cli.py``, long campaign in ``benchmarks/fuzz_campaign.py``)."""
