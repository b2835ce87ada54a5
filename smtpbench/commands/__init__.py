"""What the subcommands share on the command line."""
