"""Building and running one load run, the same under the dashboard and headless."""
