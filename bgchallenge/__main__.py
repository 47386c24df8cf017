from bgchallenge.cli import main

raise SystemExit(main())
