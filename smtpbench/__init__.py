"""smtpbench: SMTP load tester and traffic replayer."""

from smtpbench.build_info import run_sources_if_asked

__version__ = "0.1.0"

run_sources_if_asked()  # SMTPBENCH_INTERPRETED: the sources, even in a compiled build
