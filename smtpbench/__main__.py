from smtpbench.cli import main

# The guard matters: the engine's child processes re-import the main module.
if __name__ == "__main__":
    raise SystemExit(main())
