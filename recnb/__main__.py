from recnb.cli import main

raise SystemExit(main())
