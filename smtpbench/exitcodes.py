"""Exit codes of every smtpbench command, documented in README.md."""

OK = 0  # the run completed (or the command did what it was asked)
# A threshold or a compare --fail-if rule was not met, or every session of a run failed.
THRESHOLDS_FAILED = 1
BAD_CONFIGURATION = 2  # bad flags, scenario, recording or results folder: nothing ran
INTERRUPTED = 3  # stopped early by q, Ctrl-C or SIGTERM; results of what ran were written
# The target could not be resolved, no session ever connected to it (unless
# --keep-going), or the embedded sink did not start.
TARGET_UNUSABLE = 4
ABORTED_BY_THRESHOLD = 5  # a threshold failed during the run and stopped it (--abort-on-fail)
RESULTS_NOT_WRITTEN = 6  # the run ended but its results folder could not be written whole
WORKER_LOST = 7  # a worker process died during the run; the results hold what it had sent
# smtpbench send: why the message did not go (4, TARGET_UNUSABLE: the server was unreachable).
MESSAGE_REFUSED = 8  # the server refused the session, the sender, a recipient or the message
TLS_FAILED = 9  # STARTTLS not offered or refused, or the TLS handshake failed
AUTH_FAILED = 10  # the AUTH mechanism not offered, or the credentials refused
CONVERSATION_BROKEN = 11  # the connection closed, timed out or garbled after it opened
# run --cluster: the scheduler could not be reached, it had no workers, or a host could not
# run its share (each named): nothing ran.
CLUSTER_UNUSABLE = 12
