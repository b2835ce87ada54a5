from smtpbench.cli import main

raise SystemExit(main())
