"""smtpbench: SMTP load tester and traffic replayer."""

__version__ = "0.1.0"
