"""``python -m toolchain`` is the ``edgedeploy`` command."""

from toolchain.cli import main

raise SystemExit(main())
