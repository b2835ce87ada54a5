"""``smtpbench capacity``: the highest rate a server sustains, found in steps of one run."""
