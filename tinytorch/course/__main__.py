from tinytorch.course.cli import main

raise SystemExit(main())
