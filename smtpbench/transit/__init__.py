"""Transit latency through a real MTA (``smtpbench run --through ADDRESS``).

Every message carries an ``X-Smtpbench-Id`` header; the engine notes, per
message the server accepted, its intended start and its ``250`` as wall-clock
times with the body's size and digest (``sends.py``); a receiving sink of our
own (``receiver.py``) notes each arrival; the driver matches the two
(``matching.py``) and reports transit percentiles, messages not arrived,
duplicates and altered messages (``report.py``). ``run.py`` wires it into a run.
"""
