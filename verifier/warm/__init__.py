"""A warm worker: one process that has imported the whole verifier and forks a fresh process
per request, so that an instance costs the verification and not the interpreter's start-up.

``verify worker SOCKET`` serves (:mod:`.server`); ``verify --worker SOCKET MODEL SPEC ...``
hands its own command line to it (:mod:`.client`). The forked process runs exactly the
command the client was given, with the client's standard streams, working directory,
environment and address-space limit, and its exit code becomes the client's. Its clock
(the timeout, the reported time) starts when the client started, so the time a client
process takes from launch to exit is the whole instance, request included.
"""
