import sys

from nmx.cli import main

sys.exit(main())
