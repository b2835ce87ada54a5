"""``smtpbench shell``: an interactive SMTP session on a Textual screen (``app.py``), its
connection driver (``driver.py``), completion, the message composer and its dialogs."""
