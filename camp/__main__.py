import sys

from camp.cli import main

sys.exit(main())
